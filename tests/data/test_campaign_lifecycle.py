"""A campaign Persona runs, end to end on a small state: create (audience over the catalog's tags, power),
assign (hash, stored, CRM tag through the outbox, idempotent, withdrawn customers never), outcomes from
the clean orders after the start (simulated by the generator with a known effect), report and API."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from artifacts.catalog import read_catalog
from configs.campaign import CampaignSpecError, parse_campaign
from configs.settings import load_settings
from core.errors import ValidationFailed
from features.synthetic.campaigns import simulate_orders, simulate_outcomes, true_effect

N = 3000
START = pd.Timestamp("2026-01-10", tz="UTC")


def _spec(**over):
    raw = {
        "name": "winback",
        "audience": "churn_risk = 'high' and persona_name != 'prospect'",
        "arms": [{"name": "treatment", "share": 0.5}, {"name": "control", "share": 0.5, "control": True}],
        "start": "2026-01-10",
        "end": "2026-02-10",
        "outcome": {"kind": "conversion", "window_days": 30},
        "minimum_effect": 0.05,
        "breakdown_by": ["persona_name"],
    }
    raw.update(over)
    return parse_campaign(raw, origin="winback.yaml")


def _record_clock(clean, as_of) -> None:
    """What `persona ingest` writes beside the clean tables: the data's clock."""
    report = {"as_of": pd.Timestamp(as_of).isoformat(), "absent": ["events", "leads"]}
    (clean / "ingest_report.json").write_text(json.dumps(report))


@pytest.fixture()
def world(tmp_path, monkeypatch):
    from serving.tag_store import TagStore
    from serving.tagging import open_tag_store

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    settings = load_settings()
    rng = np.random.default_rng(0)
    ids = [f"P{i:012x}" for i in range(N)]
    personas = rng.choice(["at_risk", "bargain_hunter", "complainer", "prospect"], size=N)
    risk = rng.choice(["high", "low"], size=N, p=[0.7, 0.3])
    consent = np.ones(N, dtype=bool)
    consent[:50] = False  # withdrawn
    clean = tmp_path / "clean"
    clean.mkdir()
    pd.DataFrame({"customer_id": ids, "consent_profiling": consent}).to_parquet(clean / "customers.parquet")
    history = pd.DataFrame(
        {
            "order_id": [f"H{i}" for i in range(N)],
            "customer_id": ids,
            "order_ts": (START - pd.to_timedelta(rng.integers(1, 200, N), unit="D")).astype("datetime64[us, UTC]"),
            "amount": 50.0,
            "discount": 0.0,
            "quantity": 1,
            "category": "x",
            "is_returned": False,
            "is_cancelled": False,
        }
    )
    history.to_parquet(clean / "orders.parquet")
    _record_clock(clean, history["order_ts"].max())
    catalog = read_catalog(settings.tags.catalog_path())
    store = open_tag_store(settings, catalog)
    tags = pd.DataFrame({"customer_id": ids, "churn_risk": risk, "persona_name": personas})
    with store.engine.begin() as conn:
        TagStore(store.engine).apply(
            conn, tags=tags, produced_by={"churn_risk": "m", "persona_name": "m"}, at=datetime.now(UTC)
        )
    return settings, catalog, pd.DataFrame({"customer_id": ids, "persona": personas, "risk": risk, "consent": consent})


def test_create_assign_report(world) -> None:
    from serving.campaigns import assign_campaign, campaign_report, create_campaign

    settings, catalog, truth = world
    spec = _spec()
    made = create_campaign(settings, spec, catalog=catalog)
    eligible = truth[(truth.risk == "high") & (truth.persona != "prospect") & truth.consent]
    assert made.audience_size == len(eligible)
    assert made.withdrawn_excluded == int(((truth.risk == "high") & (truth.persona != "prospect") & ~truth.consent).sum())
    assert 0 < made.mde < 1
    # Before any outcome: the campaign starts after the data's as-of -> refused, naming `start`.
    with pytest.raises(ValidationFailed, match="start: 2026-01-10 is after the data's as-of"):
        campaign_report(settings, "winback")

    first = assign_campaign(settings, "winback", catalog=catalog)
    assert first["new"] == first["total"] == len(eligible) == first["queued"]
    again = assign_campaign(settings, "winback", catalog=catalog)
    assert again["new"] == 0 and again["queued"] == 0 and again["by_arm"] == first["by_arm"]  # idempotent

    engine = sa.create_engine(settings.url(settings.state_url))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select customer_id, new_value from crm_outbox where tag = 'persona_campaign_winback'")
        ).all()
    assert len(rows) == len(eligible)
    assert {v for _, v in rows} == {"treatment", "control"}
    withdrawn = set(truth.loc[~truth.consent, "customer_id"])
    assert not withdrawn & {c for c, _ in rows}

    # The generator's outcomes arrive: orders in the window, true effect by persona.
    with engine.connect() as conn:
        assigned = pd.DataFrame(
            conn.execute(sa.text("select customer_id, arm from campaign_assignments")).all(), columns=["customer_id", "arm"]
        )
    assigned = assigned.merge(truth[["customer_id", "persona"]], on="customer_id")
    outcome = simulate_outcomes(assigned.arm, assigned.persona, control="control", seed=1)
    orders = simulate_orders(assigned.customer_id, outcome, start=START, window_days=30, seed=1)
    clean = settings.data_dir / "clean" / "orders.parquet"
    both = pd.concat([pd.read_parquet(clean), orders])
    both.to_parquet(clean)
    _record_clock(clean.parent, both["order_ts"].max())  # what a re-ingest records

    report = campaign_report(settings, "winback")
    (result,) = report["outcomes"]
    (effect,) = result["effects"]
    _, tau = true_effect(assigned.persona)
    assert effect["ci_low"] <= tau.mean() <= effect["ci_high"]
    by_persona = {r["value"]: r["effects"][0] for r in result["breakdowns"]["persona_name"]}
    assert by_persona["at_risk"]["ci_low"] > 0  # persuadable
    assert by_persona["complainer"]["ci_low"] <= -0.06 <= by_persona["complainer"]["ci_high"]  # put off
    assert by_persona["complainer"]["difference"] < by_persona["at_risk"]["ci_low"]
    assert not result["sample_ratio"]["mismatch"]
    # GET /v1/campaigns/winback returns the same data.
    from starlette.testclient import TestClient

    from serving.campaign_api import make_app

    body = TestClient(make_app(lambda: settings)).get("/winback").json()
    assert body["outcomes"][0]["effects"][0]["difference"] == pytest.approx(effect["difference"])


def test_bad_campaigns_are_refused_naming_the_field(world) -> None:
    from serving.campaigns import create_campaign

    settings, catalog, _ = world
    with pytest.raises(ValidationFailed, match=r"^audience: unknown tag 'churn_rsk'"):
        create_campaign(settings, _spec(audience="churn_rsk = 'high'"), catalog=catalog)
    with pytest.raises(CampaignSpecError, match=r"^outcome.event_type: 'purchase' is not an event type"):
        create_campaign(
            settings, _spec(outcome={"kind": "event", "event_type": "purchase", "window_days": 7}), catalog=catalog
        )
    create_campaign(settings, _spec(), catalog=catalog)
    with pytest.raises(ValidationFailed, match="already exists with a different definition"):
        create_campaign(settings, _spec(minimum_effect=0.1), catalog=catalog)

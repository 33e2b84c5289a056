"""The generator runs campaigns: `persona data campaign-outcomes` turns a stored campaign's assignment
into orders in the raw ERP file (known effect by true persona), which ingest resolves to the same
customers; the campaign then counts as finished for the uplift model once the data's clock passes its
window."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from artifacts.campaigns import assignments_table, campaigns_table, finished_campaigns, metadata
from configs.campaign import parse_campaign
from configs.settings import load_settings
from features.synthetic.campaigns import CAMPAIGN_ORDER_PREFIX, true_personas
from models.assignment import assign_arms
from persona.cli import main
from serving.outbox import make_state_engine

START, END = "2026-01-05", "2026-02-04"


@pytest.fixture()
def company(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    assert main(["data", "generate", "--customers", "400", "--seed", "3"]) == 0
    assert main(["ingest"]) == 0
    settings = load_settings()
    customers = pd.read_parquet(tmp_path / "clean" / "customers.parquet")
    buyers = sorted(set(pd.read_parquet(tmp_path / "clean" / "orders.parquet").customer_id))
    spec = parse_campaign(
        {
            "name": "trial",
            "audience": "churn_risk = 'high'",
            "arms": [{"name": "mail", "share": 0.5}, {"name": "none", "share": 0.5, "control": True}],
            "start": START,
            "end": END,
            "outcome": {"kind": "conversion", "window_days": 30},
        },
        origin="trial.yaml",
    )
    arms = assign_arms(buyers, salt="", campaign="trial", arms=[("mail", 0.5), ("none", 0.5)])
    engine = make_state_engine(settings.url(settings.state_url))
    metadata.create_all(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(campaigns_table).values(
                name="trial", spec=spec.model_dump_json(), created_at=now, audience_size=len(buyers)
            )
        )
        conn.execute(
            sa.insert(assignments_table),
            [
                {"campaign": "trial", "customer_id": c, "arm": a, "assigned_at": now, "tags": json.dumps({})}
                for c, a in zip(buyers, arms, strict=True)
            ],
        )
    return settings, customers, pd.DataFrame({"customer_id": buyers, "arm": arms})


def test_simulated_orders_flow_through_ingest_to_the_same_customers(company, capsys) -> None:
    settings, customers, assigned = company
    raw_path = settings.data_dir / "raw" / "orders.csv.gz"
    rows_before = len(pd.read_csv(raw_path, dtype=str))
    found, left_out = finished_campaigns(settings)
    assert not found and left_out == ["trial: window open until 2026-02-04 (data as of 2025-12-31)"]

    assert main(["data", "campaign-outcomes", "trial", "--seed", "9"]) == 0
    said = capsys.readouterr().out
    assert "next: persona ingest --as-of 2026-02-04" in said
    raw = pd.read_csv(raw_path, dtype=str, keep_default_na=False)
    new = raw[raw.order_id.str.startswith(f"{CAMPAIGN_ORDER_PREFIX}-trial-")]
    assert len(raw) == rows_before + len(new) and len(new) > 0
    assert (new.customer_ref != "").all()
    # Running it again replaces the campaign's orders: the same rows, not twice as many.
    assert main(["data", "campaign-outcomes", "trial", "--seed", "9"]) == 0
    assert len(pd.read_csv(raw_path, dtype=str)) == len(raw)

    assert main(["ingest", "--as-of", END]) == 0
    after = pd.read_parquet(settings.data_dir / "clean" / "customers.parquet")
    assert set(after.customer_id) == set(customers.customer_id)  # identities are stable across ingests
    orders = pd.read_parquet(settings.data_dir / "clean" / "orders.parquet")
    window = orders[orders.order_ts.between(pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC"), "left")]
    simulated = window[window.order_id.str.startswith(f"{CAMPAIGN_ORDER_PREFIX}-trial-")]
    assert len(simulated) == len(new)  # every simulated order kept, none quarantined
    assert set(simulated.customer_id) <= set(assigned.customer_id)

    (campaign,) = finished_campaigns(settings)[0]
    frame = campaign.frame.set_index("customer_id")
    ordered = set(window[~window.is_cancelled].customer_id)  # any order in the window is the outcome
    assert frame.outcome.to_dict() == {c: int(c in ordered) for c in assigned.customer_id}
    assert frame.treated.to_dict() == (assigned.set_index("customer_id").arm == "mail").astype(int).to_dict()


def test_true_personas_come_from_the_ground_truth(company) -> None:
    settings, _, assigned = company
    identity = pd.read_parquet(settings.data_dir / "clean" / "identity_map.parquet")
    personas = true_personas(assigned.customer_id, identity_map=identity, raw_dir=settings.data_dir / "raw")
    assert personas.notna().all()
    truth = pd.read_parquet(settings.data_dir / "raw" / "ground_truth" / "persons.parquet")
    assert set(personas) <= {*truth.archetype, "complainer"} - {"prospect"}
    # about the top tenth of complainers are do-not-disturb
    assert 0 < np.mean(personas == "complainer") < 0.3

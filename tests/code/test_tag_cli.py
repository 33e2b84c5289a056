"""Batch tagging glue and `persona tags list | check | fit | explain` on a tiny hand-built data dir."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from artifacts import catalog as catalogs
from configs.settings import load_settings
from core.errors import CatalogError, ValidationFailed
from models.tag_engine import MODEL_OUTPUTS
from persona.cli import main
from serving import tagging

SNAP_OLD = pd.Timestamp("2025-11-01", tz="UTC").as_unit("us")
SNAP = pd.Timestamp("2025-12-01", tz="UTC").as_unit("us")


def _write_features(settings) -> None:
    folder = settings.path(settings.feast.source_dir)
    folder.mkdir(parents=True, exist_ok=True)
    ids = ["P1", "P2", "P3", "P4", "P5"]
    old = pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": SNAP_OLD,
            "recency_days": [900.0] * 5,
            "frequency_365d": [99] * 5,
            "monetary_365d": [9e9] * 5,
        }
    )
    new = pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": SNAP,
            "recency_days": [5.0, 20.0, 60.0, 200.0, 400.0],
            "frequency_365d": [12, 6, 3, 1, 0],
            "monetary_365d": [2400.0, 900.0, 300.0, 80.0, 0.0],
            "orders_lifetime": [30, 10, 4, 1, 2],
            "tenure_days": [800, 300, 100, 200, 700],
            "discount_rate_365d": [0.0, 0.4, 0.1, 0.0, 0.0],
            "return_rate_365d": [0.0, 0.0, 0.5, 0.0, 0.0],
        }
    )
    tx = pd.concat([old, new], ignore_index=True)
    tx["created"] = SNAP
    tx.to_parquet(folder / "customer_transactions.parquet")
    eng = pd.DataFrame(
        {
            "customer_id": ["P1", "P2", "P3", "P4"],  # P5 has no engagement row
            "event_timestamp": SNAP,
            "created": SNAP,
            "visits_90d": [10, 0, 2, 0],
            "email_opens_90d": [3, 0, 0, 0],
            "complaints_90d": [0, 0, 2, 0],
            "support_tickets_90d": [0, 1, 0, 0],
        }
    )
    eng.to_parquet(folder / "customer_engagement.parquet")


def _model_outputs(frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    return frame.assign(
        segment_id=[1] * n,
        persona=["high_value_loyal"] * n,
        churn_probability=[0.1] * n,
        churn_tier=["low"] * n,
        conversion_probability=[0.5] * n,
        conversion_tier=["warm"] * n,
        churn_reasons=["no order for 400 days"] * n,
        conversion_reasons=[None] * n,
        clv_value=[120.5] * n,
        clv_tier=["high"] * n,
        next_best=["books"] * n,
        next_best_list=["books, toys, home"] * n,
        uplift_score=[0.05] * n,
        uplift_group=["persuadable"] * n,
    )


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(settings.data_dir))
    _write_features(settings)
    return settings


def test_latest_feature_frame_joins_tables_at_the_latest_snapshot(env):
    frame = catalogs.latest_feature_frame(env)
    assert len(frame) == 5 and (frame["event_timestamp"] == SNAP).all()
    assert frame.set_index("customer_id").loc["P1", "visits_90d"] == 10
    assert pd.isna(frame.set_index("customer_id").loc["P5", "visits_90d"])


def test_fit_tag_customers_store_and_explain(env, capsys):
    assert main(["tags", "fit"]) == 0
    out = capsys.readouterr().out
    assert "snapshot 2025-12-01" in out
    payload = json.loads(env.path(env.tags.cutpoints).read_text())
    # fitted on the 4 buyers of the window (P5 bought nothing in 365 days): recency 5, 20, 60, 200 are
    # fewer distinct values than bins, so each takes the score of its mid-rank (1, 2, 4, 5)
    assert payload["cutpoints"]["recency"]["edges"] == pytest.approx([12.5, 40.0, 40.0, 130.0])
    assert payload["catalog_version"] == catalogs.load_catalog(env).version

    catalog = catalogs.load_catalog(env)
    frame = _model_outputs(catalogs.latest_feature_frame(env))
    tags = tagging.tag_customers(env, frame=frame, catalog=catalog)
    by_id = tags.set_index("customer_id")
    assert list(tags.columns) == ["customer_id", *catalog.keys]
    # P1: recency 5 -> qcut 1 -> r 5; frequency 12 is the top quintile; champions, mature (tenure 800)
    assert by_id.loc["P1", "rfm_r"] == "5" and by_id.loc["P1", "rfm_segment"] == "champions"
    assert by_id.loc["P1", "lifecycle_stage"] == "mature" and by_id.loc["P1", "vip"] == "true"
    # P5: no order for 400 days -> churned and lost; no engagement row -> inactive on channels
    assert by_id.loc["P5", "lifecycle_stage"] == "churned" and by_id.loc["P5", "rfm_segment"] == "lost"
    assert by_id.loc["P5", "channel_inactive"] == "true"
    assert by_id.loc["P2", "discount_sensitive"] == "true" and by_id.loc["P3", "complaint_risk"] == "true"

    store = tagging.open_tag_store(env, catalog)
    produced = catalog.produced_by({"persona-churn": "3", "persona-segments": "2", "persona-conversion": "1"})
    at = datetime(2025, 12, 1, 3, tzinfo=UTC)
    with store.engine.begin() as conn:
        changes = store.apply(conn, tags=tags, produced_by=produced, inputs=frame, at=at)
    assert len(changes) == 5 * len(catalog.tags) - int(tags.drop(columns="customer_id").isna().sum().sum())
    p5 = next(c for c in changes if c.customer_id == "P5" and c.tag == "lifecycle_stage")
    assert p5.inputs == {"orders_lifetime": 2, "recency_days": 400.0, "tenure_days": 700}
    assert p5.crm_field == "persona_lifecycle_stage" and p5.produced_by == "rule:lifecycle_stage@v1"

    capsys.readouterr()
    assert main(["tags", "explain", "P5", "--changes", "50"]) == 0
    out = capsys.readouterr().out
    assert "lifecycle_stage      = churned" in out
    assert "inputs: orders_lifetime=2, recency_days=400, tenure_days=700" in out
    assert "(unset) -> churned  by rule:lifecycle_stage@v1" in out
    assert "churn_risk           = low" in out and "by model:persona-churn@3" in out
    assert "inputs: rfm_r=1, rfm_f=1, rfm_m=1" in out  # a segment shows the scores it was read from
    # the tag history keeps the probability and the reasons behind a tier (the model version is in `by`)
    assert "inputs: churn_tier=low, churn_probability=0.1, churn_reasons=no order for 400 days" in out
    assert "churn_reasons_text   = no order for 400 days" in out
    # one first change for each tag P5 has a value for (all but the conversion reasons, which are none)
    held = int(by_id.loc["P5"].notna().sum())
    assert held >= len(catalog.tags) - 2 and by_id.loc["P5"].isna()["conversion_reasons_text"]
    assert out.count(" -> ") == held

    # the business's own keys name the same customer: its orders' customer number, its lead id
    clean = env.data_dir / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "source": ["orders", "orders", "leads"],
            "source_record_id": ["O1", "O2", "L-9"],
            "source_key": ["K-5", "K-5", "L-9"],
            "customer_id": ["P5", "P5", "P5"],
            "match_rule": ["new", "contact_id", "email_exact"],
        }
    ).to_parquet(clean / "identity_map.parquet")
    for key in ("K-5", "L-9"):
        assert main(["tags", "explain", key]) == 0
        # every tag but the conversion reasons (P5 has none) holds a value
        assert capsys.readouterr().out.startswith(
            f"customer P5 (CRM record K-5): {len(catalog.tags) - 1} tags"
        )


def test_explain_unknown_customer_is_a_clear_error(env, capsys):
    assert main(["tags", "explain", "P404"]) == 2
    assert "no tags recorded for customer P404" in capsys.readouterr().err


def test_list_shows_the_catalog(env, capsys):
    assert main(["tags", "list", "--wide"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tag catalog configs/tags.yaml")
    rows = {line.split()[0]: line.split("│") for line in out.splitlines() if "│" in line}
    assert [c.strip() for c in rows["rfm_segment"][:7]] == [
        "rfm_segment",
        "segment",
        "category",
        "core",
        "orders",
        "daily",
        "persona_rfm_segment",
    ]
    assert [c.strip() for c in rows["buying_intent"][:7]] == [
        "buying_intent",
        "model",
        "tier",
        "core",
        "leads",
        "daily",
        "persona_conversion_tier",
    ]


def test_a_tag_whose_source_is_absent_is_skipped_with_a_note(env, capsys, monkeypatch):
    monkeypatch.setenv("PERSONA_SOURCES__LEADS__PATH", "")
    settings = load_settings()
    if settings.sources.leads.configured:  # the env var could not switch it off: use the API
        settings = settings.model_copy(
            update={"sources": settings.sources.model_copy(update={"leads": type(settings.sources.leads)()})}
        )
    catalog = catalogs.load_catalog(settings)
    assert set(catalog.skipped) == {"buying_intent", "conversion_reasons_text"}
    assert "tag buying_intent skipped (left unset): source leads absent" in catalog.notes
    assert "buying_intent" in catalog.keys  # kept, so every answer carries the key (unset)


def test_bad_catalog_stops_the_cli_with_every_problem(env, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: x\ntags:\n"
        "  - {key: a, description: d, kind: rule, type: flag, expr: 'recency_dayz > 1', cadence: daily,"
        " owner: o, version: 1, crm_field: fa}\n"
        "  - {key: a, description: d, kind: rule, type: flag, expr: 'persona > 1', cadence: daily,"
        " owner: o, version: 1, crm_field: fb}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PERSONA_TAGS__CATALOG", str(bad))
    assert main(["tags", "list"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "unknown name 'recency_dayz'" in err and "cannot mix a string" in err


def test_fit_without_features_says_what_to_run(settings, monkeypatch, capsys):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(settings.data_dir))
    assert main(["tags", "fit"]) == 2
    assert "persona features build" in capsys.readouterr().err


def test_tag_customers_skips_withdrawn_consent_and_refuses_duplicates(env):
    catalog = catalogs.load_catalog(env)
    frame = _model_outputs(catalogs.latest_feature_frame(env))
    cut = {
        "cutpoints": {
            n: {"feature": c.feature, "bins": 5, "population": c.population, "edges": [1, 2, 3, 4]}
            for n, c in catalog.cutpoints.items()
        }
    }
    frame["consent_profiling"] = [True, False, None, True, True]
    tags = tagging.tag_customers(env, frame=frame, catalog=catalog, cutpoints=cut)
    assert tags["customer_id"].tolist() == ["P1", "P3", "P4", "P5"]
    with pytest.raises(ValidationFailed, match="customer P1 appears in 2 rows"):
        tagging.tag_customers(env, frame=pd.concat([frame, frame.iloc[:1]]), catalog=catalog, cutpoints=cut)


def test_missing_cutpoints_file_is_a_catalog_error(env):
    catalog = catalogs.load_catalog(env)
    frame = _model_outputs(catalogs.latest_feature_frame(env))
    with pytest.raises(CatalogError, match="no fitted cut points"):
        tagging.tag_customers(env, frame=frame, catalog=catalog)


def test_tag_distribution_counts_values():
    tags = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "vip": ["true", "false", "false", None]})
    text = tagging.tag_distribution(tags)
    lines = text.splitlines()
    assert lines[0] == "vip"
    assert lines[1].split() == ["false", "2", "50.0%"]
    assert {tuple(line.split()) for line in lines[2:]} == {("true", "1", "25.0%"), ("unset", "1", "25.0%")}


def test_known_names_come_from_the_feature_services(settings, monkeypatch):
    calls = []

    def fake_service_features(store, service):
        calls.append(service)
        return {
            "segmentation_v1": ["recency_days"],
            "churn_v1": ["visits_90d"],
            "conversion_v1": ["lead_age_days"],
            "segmentation_orders_v1": ["recency_days"],
            "churn_orders_v1": ["visits_90d"],
            "conversion_leads_v1": ["lead_age_days"],
            "clv_v1": ["recency_days"],
            "recommend_v1": ["recency_days"],
        }[service]

    monkeypatch.setattr(catalogs, "service_features", fake_service_features)
    names = catalogs.known_names(settings, store=object())
    assert calls == list(settings.feast.services)
    assert names == {"recency_days", "visits_90d", "lead_age_days", *MODEL_OUTPUTS}
    # without a store: the built feature tables' columns (the list the Feast schemas are tested against)
    from features.build import FEATURE_DTYPES

    assert catalogs.known_names(settings) == set(FEATURE_DTYPES) | set(MODEL_OUTPUTS)
    # the repository catalog reads features the fake services lack: loading against them fails
    with pytest.raises(CatalogError, match="unknown name 'frequency_365d'"):
        catalogs.load_catalog(settings, known=names)

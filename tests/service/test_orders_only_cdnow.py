"""A real orders-only business end to end, through a config mapping alone (`configs/datasets/cdnow.yaml`):
CDNOW's purchase file -> ingest -> features -> Feast -> segments and churn -> tag cut points -> score
everyone -> the embedded SQL CRM, by the documented one-liner (`persona --config ... run`).

No CRM contacts, events or leads: the models train on the orders-only FeatureServices, conversion is
reported once as not configured, its scores say `no_model`, and the tags land on CDNOW's own customer
numbers. No product categories either: the recommender is skipped with the reason, its answers say
`no_model` with empty lists, while the value model (90-day horizon) trains, scores and tags. Skipped, with the reason, only when the shared data folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from training.datasets import shared_data_dir

PROJECT = Path(__file__).resolve().parents[2]
CONFIG = PROJECT / "configs" / "datasets" / "cdnow.yaml"
CDNOW = shared_data_dir() / "cdnow" / "CDNOW_master.txt"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CDNOW.is_file(), reason=f"CDNOW not found at {CDNOW} (set PERSONA_SHARED_DATA)"),
]


@pytest.fixture(scope="module")
def cdnow_run(tmp_path_factory: pytest.TempPathFactory):
    """`persona --config configs/datasets/cdnow.yaml run` in a fresh data directory (once per module)."""
    from click.testing import CliRunner

    from persona.cli import cli

    data_dir = tmp_path_factory.mktemp("cdnow")
    env = {
        "PERSONA_DATA_DIR": str(data_dir),
        "PERSONA_SOURCES__ORDERS__PATH": str(CDNOW),  # wherever the shared data lives
        "PERSONA_CRM__BATCH_SIZE": "5000",  # fewer, larger CRM transactions: the same rows
        "PERSONA_IDENTITY__SALT": "cdnow-test-salt-0123456789",  # real data: never the public demo salt
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    result = CliRunner().invoke(cli, ["--config", str(CONFIG), "run"], env=env, catch_exceptions=False)
    from configs.settings import load_settings

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        settings = load_settings(CONFIG)
    return result, settings, data_dir


def _cdnow_customer_numbers() -> set[str]:
    raw = pd.read_csv(CDNOW, sep=r"\s+", dtype=str)
    return set(raw["customer_id"])


def test_the_one_liner_runs_to_the_crm(cdnow_run) -> None:
    result, _, data_dir = cdnow_run
    assert result.exit_code == 0, result.output
    report = json.loads((data_dir / "clean" / "ingest_report.json").read_text())
    assert report["absent"] == ["contacts", "leads", "events"]
    assert report["customers"] == 23_570
    # Conversion cannot exist without leads: said once, and nothing stopped.
    assert result.output.count("conversion model not configured") == 1, result.output
    assert "conversion: not scored (no champion for persona-conversion)" in result.output
    # No categories and no product lines: the recommender steps aside once, saying why.
    assert result.output.count("recommend model not configured: the orders name no category") == 1, (
        result.output
    )


def test_models_train_on_the_orders_only_feature_services(cdnow_run) -> None:
    from artifacts.registry import champion_version, load_champion

    _, settings, _ = cdnow_run
    assert load_champion(settings, "churn").feature_service == "churn_orders_v1"
    assert load_champion(settings, "segments").feature_service == "segmentation_orders_v1"
    assert champion_version(settings, "conversion") is None
    assert champion_version(settings, "recommend") is None
    assert load_champion(settings, "clv").feature_service == "clv_v1"


def test_tags_land_in_the_crm_keyed_by_cdnow_customer_numbers(cdnow_run) -> None:
    _, settings, data_dir = cdnow_run
    engine = sa.create_engine(settings.url(settings.crm.url))
    with engine.connect() as conn:
        tags = pd.read_sql("select customer_id, contact_id, crm_field, value from persona_tags", conn)
    engine.dispose()
    numbers = _cdnow_customer_numbers()
    records = set(tags["contact_id"])
    assert "" not in records
    assert records == numbers  # every customer of the file, under its own (zero-padded) number
    stage = tags[tags["crm_field"] == "persona_lifecycle_stage"].set_index("contact_id")["value"]
    assert stage.notna().all() and len(stage) == len(numbers)
    # One Persona customer per CDNOW number, and each number names one Persona customer.
    assert tags.groupby("contact_id")["customer_id"].nunique().max() == 1
    # Tags that read what an orders-only business does not have (events, leads) are not written.
    fields = set(tags["crm_field"])
    assert "persona_lifecycle_stage" in fields and "persona_churn_risk" in fields
    assert {"persona_value_tier", "persona_predicted_value"} <= fields
    assert not {"persona_channel_inactive", "persona_conversion_tier", "persona_next_best_category"} & fields
    scores = pd.read_parquet(data_dir / "scores" / "latest.parquet")
    assert scores["conversion_probability"].isna().all()
    assert scores["churn_probability"].notna().any() and scores["segment_id"].notna().all()


def test_online_scoring_skips_the_missing_model_and_takes_the_business_id(cdnow_run) -> None:
    from datetime import UTC, datetime

    from serving.scoring import Scorer, load_state

    _, settings, _ = cdnow_run
    state = load_state(settings)
    assert set(state.readiness()["models"]) == {"segments", "churn", "clv"}
    # no leads: no conversion model; no categories: no recommender; no finished campaign: no uplift model
    assert set(state.readiness()["not_loaded"]) == {"conversion", "recommend", "uplift"}
    payload = Scorer(state).score(["00001", "00002"], write_back=False, now=datetime.now(UTC))
    assert payload["scored"] == 2, payload
    for item in payload["items"]:
        assert item["status"] == "ok"
        assert item["conversion"]["not_scored_reason"] == "no_model"
        assert item["conversion"]["probability"] is None and item["conversion"]["model_version"] is None
        assert item["value"]["not_scored_reason"] is None and item["value"]["predicted_value"] >= 0
        assert item["value"]["model_version"] == state.models["clv"].version
        assert item["value"]["horizon_days"] == 90
        rec = item["recommendations"]
        assert rec["not_scored_reason"] == "no_model" and rec["model_version"] is None
        assert rec["items"] == [] and rec["new"] == []
        assert item["tags"]["next_best_category"] is None
        assert item["segment"]["segment_id"] is not None
        assert item["tags"]["channel_inactive"] is None  # no events: unset, not "true"
    assert "conversion" not in payload["model_versions"]

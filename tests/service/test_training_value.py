"""The value (CLV) model through the real parts: clean tables -> features -> Feast -> purged split ->
LightGBM on the BG/NBD offset, BG/NBD x Gamma-Gamma and the naive rate -> MLflow (plots, report) ->
registry and gate; and the honest refusal when the data is too short for the horizon."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artifacts.registry import champion_version, client, load_champion
from configs.settings import load_settings
from persona.cli import main
from tests.service.test_training_pipeline import END, clean_tables
from training.retrain import retrain

pytestmark = pytest.mark.slow
OVERRIDES = {
    "features": {"snapshot_every_days": 60, "first_snapshot": "2024-05-01", "last_snapshot": "2026-01-01"},
    "training": {"clv_horizon_days": 120},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "clean").mkdir()
    for name, frame in clean_tables().items():
        frame.to_parquet(data_dir / "clean" / f"{name}.parquet", index=False)
    # what `persona ingest` records with the tables: the data's clock
    report = {"as_of": END.isoformat(), "absent": []}
    (data_dir / "clean" / "ingest_report.json").write_text(json.dumps(report), encoding="utf-8")
    settings = load_settings(data_dir=str(data_dir), **OVERRIDES)
    report = retrain(settings, kinds=("clv",), say=lambda _: None)
    return settings, report


def test_value_model_is_trained_on_observed_horizons_and_registered(trained) -> None:
    settings, report = trained
    assert "clv" in report.outcomes, report.skipped
    outcome = report.outcomes["clv"]
    run = client(settings).get_run(outcome.run_id)
    params = run.data.params
    horizon = pd.Timedelta(days=120)
    test_t = pd.Timestamp(params["window.test_first_snapshot"])
    valid_t = pd.Timestamp(params["window.valid_last_snapshot"])
    assert pd.Timestamp(params["window.train_last_snapshot"]) + horizon <= valid_t
    assert valid_t + horizon <= test_t and test_t + horizon <= END  # every label fully observed
    # the registered model beats the naive rate on held-out MAE and ranks revenue better than chance
    assert outcome.metrics["mae"] < outcome.extra["baselines"]["naive_rate"]["mae"]
    assert outcome.metrics["capture_top_decile"] > 0.1
    assert "candidate_selection" in params and "validation MAE" in params["candidate_selection"]
    assert float(run.data.metrics["test_mae"]) == pytest.approx(outcome.metrics["mae"])
    artifacts = {a.path for a in client(settings).list_artifacts(outcome.run_id, "plots")}
    assert {"plots/value_calibration.png", "plots/capture.png"} <= artifacts
    tags = client(settings).get_model_version("persona-clv", outcome.version).tags
    assert tags["feast.feature_service"] == "clv_v1" and tags["gate.decision"] in ("promote", "reject")
    if outcome.decision.promote:
        assert champion_version(settings, "clv") == outcome.version
        loaded = load_champion(settings, "clv")
        assert loaded.feature_service == "clv_v1"
        assert set(loaded.bundle.tier_names) == {"top", "high", "standard"}


def test_value_tiers_split_validation_customers_ten_twenty_seventy(trained) -> None:
    settings, report = trained
    outcome = report.outcomes["clv"]
    from artifacts.registry import load_version

    bundle = load_version(settings, "clv", outcome.version).bundle
    value = np.sort(np.linspace(0, 100, 1001))
    tiers = pd.Series(bundle.tiers(value))
    assert list(pd.unique(tiers)) == ["standard", "high", "top"][: tiers.nunique()]
    assert bundle.tier_cuts[0] >= bundle.tier_cuts[1]


def test_too_short_data_skips_clv_with_the_reason(trained, monkeypatch, capsys) -> None:
    settings, _ = trained
    monkeypatch.setenv("PERSONA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PERSONA_FEATURES__SNAPSHOT_EVERY_DAYS", "60")
    monkeypatch.setenv("PERSONA_FEATURES__FIRST_SNAPSHOT", "2024-05-01")
    monkeypatch.setenv("PERSONA_TRAINING__CLV_HORIZON_DAYS", "365")
    assert main(["train", "clv"]) == 2
    err = capsys.readouterr().err
    assert "clv model skipped" in err and "clv_horizon_days=365" in err

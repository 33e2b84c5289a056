"""End to end through the real parts: hand-made clean tables -> `features.build` -> Feast apply ->
point-in-time training sets -> LightGBM/baseline/segments -> MLflow registry -> gate -> retrain (lock,
idempotent) -> CLI. Small data (about 400 customers) so it stays a couple of minutes on 2 cores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artifacts.registry import KINDS, champion_version, client, load_champion
from configs.settings import load_settings
from persona.cli import main
from training.registry import compare
from training.retrain import RetrainLock, retrain

pytestmark = pytest.mark.slow

START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC")


def clean_tables(seed: int = 3, n: int = 400) -> dict[str, pd.DataFrame]:
    """Customers who order at their own pace until they churn (churners' visits fade first); leads whose
    engagement score drives conversion. Values are random; tests assert behaviour, not numbers."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:012x}" for i in range(n)]
    signup = START + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    churn_at = signup + pd.to_timedelta(rng.integers(120, 700, n), unit="D")
    churns = rng.random(n) < 0.5
    gap = np.exp(rng.uniform(np.log(8), np.log(120), n))  # wide range: recency means little without pace
    orders, events = [], []
    for i, cid in enumerate(ids):
        stop = min(churn_at[i], END) if churns[i] else END
        t = signup[i]
        while True:
            t = t + pd.Timedelta(days=float(rng.exponential(gap[i])))
            if t >= stop:
                break
            orders.append(
                (
                    cid,
                    t,
                    float(rng.gamma(2, 40)),
                    float(rng.uniform(0, 5)),
                    rng.choice(["a", "b", "c"]),
                    bool(rng.random() < 0.05),
                    bool(rng.random() < 0.03),
                )
            )
            fade = churns[i] and (churn_at[i] - t) < pd.Timedelta(days=90)
            for _ in range(1 if fade else 3):
                events.append((cid, t - pd.Timedelta(days=float(rng.uniform(0, 5))), "visit", "web"))
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "consent_profiling": rng.random(n) > 0.05,
            "signup_ts": signup,
            "region": rng.choice(["north", "south"], n),
            "city": "x",
            "acquisition_channel": rng.choice(["ads", "seo"], n),
            "customer_type": "b2c",
            "is_customer": True,
        }
    )
    customers["sources"] = [["contacts", "orders"]] * n
    order_frame = pd.DataFrame(
        orders,
        columns=["customer_id", "order_ts", "amount", "discount", "category", "is_returned", "is_cancelled"],
    )
    order_frame.insert(0, "order_id", [f"O{i}" for i in range(len(order_frame))])
    order_frame["quantity"] = 1
    event_frame = pd.DataFrame(events, columns=["customer_id", "event_ts", "event_type", "channel"])
    n_leads = 2500
    lead_customer = rng.choice(ids, n_leads)
    created = START + pd.to_timedelta(rng.integers(60, 700, n_leads), unit="D")
    score = rng.uniform(0, 100, n_leads)
    source = rng.choice(["web", "fair"], n_leads)
    # an interaction (score matters for web leads only) that trees find and a linear baseline cannot
    converts = rng.random(n_leads) < np.where((score > 50) == (source == "web"), 0.85, 0.05)
    converted = created + pd.to_timedelta(rng.integers(3, 40, n_leads), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n_leads)],
            "customer_id": lead_customer,
            "created_ts": created,
            "source": source,
            "campaign": "c",
            "engagement_score": score,
            "converted_ts": pd.Series(converted).where(converts & (converted <= END)),
        }
    )
    for frame, cols in (
        (customers, ["signup_ts"]),
        (order_frame, ["order_ts"]),
        (event_frame, ["event_ts"]),
        (leads, ["created_ts", "converted_ts"]),
    ):
        for col in cols:
            frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return {"customers": customers, "orders": order_frame, "events": event_frame, "leads": leads}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A data dir with clean tables, then one full `retrain` (build, apply, materialize, train, promote)."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "clean").mkdir()
    for name, frame in clean_tables().items():
        frame.to_parquet(data_dir / "clean" / f"{name}.parquet", index=False)
    # what `persona ingest` records with the tables: the data's clock, here the end of the generated period
    report = {"as_of": END.isoformat(), "absent": []}
    (data_dir / "clean" / "ingest_report.json").write_text(json.dumps(report), encoding="utf-8")
    overrides = {
        "features": {"snapshot_every_days": 60, "first_snapshot": "2024-05-01", "last_snapshot": "2026-01-01"}
    }
    settings = load_settings(data_dir=str(data_dir), **overrides)
    said: list[str] = []
    report = retrain(settings, say=said.append)
    return settings, report, said, overrides


def test_first_retrain_trains_gates_and_promotes_all(pipeline) -> None:
    settings, report, said, _ = pipeline
    # the three models this world always has; every other kind is trained or skipped with its reason
    assert {"segments", "churn", "conversion"} <= set(report.outcomes), (report.skipped, said)
    assert set(report.outcomes) | set(report.skipped) == set(KINDS), (report.skipped, said)
    assert all(report.skipped.values()), report.skipped
    for kind, outcome in report.outcomes.items():
        assert outcome.decision.promote, (kind, outcome.decision.reason)
        assert champion_version(settings, kind) == outcome.version
        assert report.promoted[kind] == (None, outcome.version)
    churn = report.outcomes["churn"]
    assert churn.metrics["roc_auc"] > 0.6  # churners' visits fade and orders stop: learnable
    assert report.outcomes["conversion"].metrics["roc_auc"] > 0.7  # the score drives conversion
    assert report.outcomes["segments"].metrics["silhouette"] > settings.training.gate.silhouette_floor
    assert any(line.startswith("churn: champion v- -> v") for line in said)


def test_training_window_is_point_in_time_and_purged(pipeline) -> None:
    settings, report, _, _ = pipeline
    params = client(settings).get_run(report.outcomes["churn"].run_id).data.params
    test_t = pd.Timestamp(params["window.test_first_snapshot"])
    valid_t = pd.Timestamp(params["window.valid_last_snapshot"])
    train_last = pd.Timestamp(params["window.train_last_snapshot"])
    horizon = pd.Timedelta(days=settings.training.churn_horizon_days)
    assert train_last + horizon <= valid_t and valid_t + horizon <= test_t
    assert test_t + horizon <= END  # the test labels were observed


def test_champion_loads_with_its_feature_service(pipeline) -> None:
    settings, _, _, _ = pipeline
    loaded = load_champion(settings, "conversion")
    assert loaded.feature_service == "conversion_v1"
    assert "lead_engagement_score" in loaded.bundle.features
    segments = load_champion(settings, "segments")
    assert segments.feature_service == "segmentation_v1" and len(segments.bundle.persona_names) >= 2


def test_second_retrain_is_idempotent(pipeline) -> None:
    settings, first, _, _ = pipeline
    before = {k: champion_version(settings, k) for k in first.outcomes}
    again = retrain(settings, build=False, say=lambda _: None)
    # the same data and seed give an equal model, which does not beat the champion: no alias moves
    assert again.promoted == {}
    assert {k: champion_version(settings, k) for k in first.outcomes} == before
    churn = again.outcomes["churn"]
    assert churn.metrics["pr_auc"] == pytest.approx(first.outcomes["churn"].metrics["pr_auc"])
    tags = client(settings).get_model_version("persona-churn", churn.version).tags
    assert tags["gate.decision"] == "reject" and "does not beat champion" in tags["gate.reason"]
    table = compare(settings)
    assert len(table[table["model"] == "persona-churn"]) == 2


def test_cli_lock_compare_promote_rollback(pipeline, monkeypatch, capsys) -> None:
    settings, first, _, overrides = pipeline
    monkeypatch.setenv("PERSONA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PERSONA_FEATURES__SNAPSHOT_EVERY_DAYS", "60")
    monkeypatch.setenv("PERSONA_FEATURES__FIRST_SNAPSHOT", overrides["features"]["first_snapshot"])
    with RetrainLock(settings.path(settings.training.lock_path)):
        assert main(["retrain", "--skip-build"]) == 2
    assert "error: another retrain is running" in capsys.readouterr().err

    assert main(["compare"]) == 0
    out = capsys.readouterr().out
    assert "persona-churn" in out and "champion" in out and "churn_v1" in out

    champion = champion_version(settings, "churn")
    newest = str(compare(settings, ("churn",))["version"].max())
    assert main(["promote", "churn", "--force", newest, "--reason", "canary"]) == 0
    assert f"churn: champion v{champion} -> v{newest} (forced: canary)" in capsys.readouterr().out
    assert main(["promote", "--rollback", "churn"]) == 0
    assert f"churn: champion v{newest} -> v{champion} (rollback)" in capsys.readouterr().out
    assert champion_version(settings, "churn") == champion
    assert main(["promote", "churn", "--force", "99", "--reason", "x"]) == 2
    assert "persona-churn has no version 99" in capsys.readouterr().err

    # the scheduler reports a run that found the lock taken and goes on (here: stops after one run)
    with RetrainLock(settings.path(settings.training.lock_path)):
        assert main(["schedule", "--once-now", "--runs", "1", "--skip-build"]) == 0
    out = capsys.readouterr().out
    assert "retrain '0 3 * * 1' (UTC)" in out and "retrain run 1 failed: another retrain is running" in out


def test_cli_train_registers_a_challenger(pipeline, monkeypatch, capsys) -> None:
    settings, _, _, overrides = pipeline
    monkeypatch.setenv("PERSONA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PERSONA_FEATURES__SNAPSHOT_EVERY_DAYS", "60")
    monkeypatch.setenv("PERSONA_FEATURES__FIRST_SNAPSHOT", overrides["features"]["first_snapshot"])
    champion = champion_version(settings, "conversion")
    assert main(["train", "conversion", "--no-promote"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("conversion: v")
        and "(run " in out
        and "conversion_v1" in out
        and "test ROC-AUC" in out
    )
    assert champion_version(settings, "conversion") == champion  # --no-promote never moves champion


def test_failed_alias_move_restores_the_ones_already_moved(pipeline) -> None:
    from core.errors import RegistryError
    from training.jobs import TrainOutcome
    from training.registry import GateDecision
    from training.retrain import promote_all

    settings, _, _, _ = pipeline
    churn_before = champion_version(settings, "churn")
    newest = str(compare(settings, ("churn",))["version"].max())
    assert newest != churn_before
    accept = GateDecision(True, "test")
    outcomes = {
        "churn": TrainOutcome("churn", "r", newest, "churn_v1", {}, accept, churn_before),
        "conversion": TrainOutcome("conversion", "r", "999", "conversion_v1", {}, accept, None),
    }
    with pytest.raises(RegistryError, match="restored churn to the previous champion"):
        promote_all(settings, outcomes)
    assert champion_version(settings, "churn") == churn_before
    assert not outcomes["churn"].promoted
    assert (
        "persona-conversion has no version 999"
        in client(settings).get_model_version("persona-churn", newest).tags["champion.reverted"]
    )


def test_large_training_sets_are_sampled_by_customer_and_the_run_says_so(pipeline, caplog) -> None:
    import logging

    from training.jobs import train_classifier

    settings, report, _, _ = pipeline
    full = client(settings).get_run(report.outcomes["churn"].run_id).data.params
    assert full["sampling.method"] == "full frame" and float(full["sampling.fraction"]) == 1.0
    available = int(full["sampling.train_rows_available"])
    assert available == int(full["window.train_rows"]) > 300
    small = settings.model_copy(
        update={"training": settings.training.model_copy(update={"max_train_rows": available // 2})}
    )
    with caplog.at_level(logging.INFO, logger="training.trainsets"):
        outcome = train_classifier(small, "churn", promote=False)
    run = client(settings).get_run(outcome.run_id)
    params = run.data.params
    fraction = float(params["sampling.fraction"])
    assert 0.4 < fraction < 0.6 and "hash of customer_id" in params["sampling.method"]
    used = int(params["sampling.train_rows_used"])
    assert used == int(params["window.train_rows"]) and 0.3 * available < used < 0.7 * available
    for split in ("valid", "test"):
        assert int(params[f"sampling.{split}_rows_used"]) < int(params[f"sampling.{split}_rows_available"])
    assert "sampled" in run.data.tags["mlflow.note.content"]
    said = [r.getMessage() for r in caplog.records if r.name == "training.trainsets"]
    assert len(said) == 1 and said[0].startswith(f"churn rows: sampled {fraction:.1%} of customers"), said
    assert f"train {used:,} of {available:,}" in said[0]


def test_segments_fit_on_a_hashed_share_of_many_customers_and_the_run_says_so(pipeline, caplog) -> None:
    import logging

    from training.jobs import train_segments

    settings, report, _, _ = pipeline
    full = client(settings).get_run(report.outcomes["segments"].run_id).data.params
    rows = int(full["window.rows"])
    assert full["sampling.method"] == "full frame" and float(full["sampling.fraction"]) == 1.0
    assert int(full["sampling.fit_rows_used"]) == int(full["sampling.fit_rows_available"]) == rows > 200
    limit = rows // 2
    small = settings.model_copy(
        update={
            "training": settings.training.model_copy(
                update={
                    "segments": settings.training.segments.model_copy(update={"max_fit_customers": limit})
                }
            )
        }
    )
    with caplog.at_level(logging.INFO, logger="training.jobs"):
        outcome = train_segments(small, promote=False)
    run = client(settings).get_run(outcome.run_id)
    params = run.data.params
    used = int(params["sampling.fit_rows_used"])
    assert 0.3 * rows < used < 0.7 * rows and int(params["sampling.fit_rows_available"]) == rows
    assert (
        0.4 < float(params["sampling.fraction"]) < 0.6 and "hash of customer_id" in params["sampling.method"]
    )
    assert params["sampling.seed"] == str(settings.training.seed)
    assert int(params["sampling.max_fit_customers"]) == limit
    assert int(params["window.rows"]) == rows  # the metrics still cover every customer
    assert "k-means fitted on the sampled" in run.data.tags["mlflow.note.content"]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("segments fitted on")]
    assert len(said) == 1 and f"fit {used:,} of {rows:,} rows" in said[0], said

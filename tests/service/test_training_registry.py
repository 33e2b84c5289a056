"""Real MLflow (SQLite in a tmp dir): what a run logs, no PII in artifacts, aliases, rollback, manual
promotion, compare, and loading the champion with only `models` code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from artifacts.registry import champion_version, client, load_champion
from configs.settings import load_settings
from core.errors import RegistryError
from tests.model.test_gate_shuffled_labels import make_data
from training.jobs import evaluate_and_register, fit_classifiers
from training.registry import compare, promote_forced, rollback

pytestmark = pytest.mark.slow
EMAIL = re.compile(rb"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two registered churn versions: v1 (first, promoted by the gate), v2 (another seed, challenger)."""
    settings = load_settings(data_dir=str(tmp_path_factory.mktemp("data")))
    outcomes = []
    for seed in (0, 1):
        data = make_data(seed=seed)
        model, baseline = fit_classifiers(data, settings)
        outcomes.append(
            evaluate_and_register(
                settings, data=data, model=model, baseline=baseline, store=None, promote=False
            )
        )
    promote_forced(settings, "churn", version=outcomes[0].version, reason="test set-up")
    return settings, outcomes


def test_run_logs_params_metrics_artifacts(registry) -> None:
    settings, (first, _) = registry
    run = client(settings).get_run(first.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["seed"] == "7" and params["feature_service"] == "churn_v1"
    assert params["feature_service_version"] == "1"
    assert params["git_commit"] != ""
    # the configuration is one artifact (config.json), not a param per key
    assert not any(k.startswith("config.") for k in params)
    # the model's hyperparameters
    assert params["model"] == "lightgbm" and params["calibration"] == "platt"
    assert params["model.learning_rate"] and params["model.num_leaves"] and int(params["best_iteration"]) >= 1
    # what was trained on what
    description = run.data.tags["mlflow.note.content"]
    assert "churn_v1" in description and "1,400 rows" in description and "700 rows" in description
    inputs = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset for i in run.inputs.dataset_inputs
    }
    assert set(inputs) >= {"training", "validation", "test"}
    assert (
        inputs["training"].name.startswith("churn_v1@") and '"num_rows": 1400' in inputs["training"].profile
    )
    assert params["window.train_rows"] == "1400" and params["window.test_rows"] == "700"
    assert params["window.test_first_snapshot"] == "2025-09-28T00:00:00+00:00"
    for name in (
        "test_roc_auc",
        "test_pr_auc",
        "baseline_test_roc_auc",
        "baseline_test_pr_auc",
        "valid_roc_auc",
    ):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["test_roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert metrics["test_n"] == 700
    experiment = client(settings).get_experiment(run.info.experiment_id)
    assert experiment.name == "persona-churn"
    assert (
        experiment.artifact_location
        == (settings.data_dir.resolve() / "mlflow/artifacts/persona-churn").as_uri()
    )

    root = Path(experiment.artifact_location.removeprefix("file://"))
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for expected in (
        "plots/roc.png",
        "plots/pr.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        "report.html",
        "config.json",
        "summary.json",
    ):
        assert any(f.endswith(f"{first.run_id}/artifacts/{expected}") for f in files), expected
    config = client(settings).download_artifacts(first.run_id, "config.json")
    assert json.loads(Path(config).read_text())["training"]["gate"]["primary_metric"] == "pr_auc"
    report = next(root.rglob(f"{first.run_id}/artifacts/report.html")).read_text()
    assert "Held-out test window" in report and "data:image/png;base64," in report
    # no PII: no '@' in any text artifact, no e-mail pattern in any file (model pickles included)
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if path.suffix != ".png":  # compressed image bytes match the pattern by chance; pickles are plain
            assert not EMAIL.search(raw), path
        if path.suffix in (".json", ".html", ".txt", ".yaml", ".csv") or path.name == "MLmodel":
            assert b"@" not in raw, path


def test_versions_tags_and_aliases(registry) -> None:
    settings, (first, second) = registry
    c = client(settings)
    v1 = c.get_model_version("persona-churn", first.version)
    v2 = c.get_model_version("persona-churn", second.version)
    assert v1.tags["feast.feature_service"] == "churn_v1" and v1.tags["gate.decision"] == "promote"
    assert v1.tags["champion.promoted_by"] == "manual" and v1.tags["champion.previous"] == "none"
    assert v2.tags["gate.champion_at_decision"] == "none"  # no champion existed when v2 was gated
    assert "challenger" in v2.aliases and "champion" in v1.aliases
    summary = json.loads(
        Path(c.download_artifacts(first.run_id, "summary.json", str(settings.data_dir))).read_text()
    )
    assert summary["gate"]["gate.decision"] == "promote"


def test_manual_promotion_then_rollback(registry) -> None:
    settings, (first, second) = registry
    before = promote_forced(settings, "churn", version=second.version, reason="try v2")
    assert before == first.version and champion_version(settings, "churn") == second.version
    v2 = client(settings).get_model_version("persona-churn", second.version)
    assert v2.tags["champion.previous"] == first.version and v2.tags["champion.promoted_by"] == "manual"

    assert rollback(settings, "churn") == (second.version, first.version)
    assert champion_version(settings, "churn") == first.version
    v1 = client(settings).get_model_version("persona-churn", first.version)
    assert (
        v1.tags["champion.promoted_by"] == "rollback" and v1.tags["champion.restored_from"] == second.version
    )
    with pytest.raises(RegistryError, match="has no previous champion recorded"):
        rollback(settings, "churn")  # v1 was the first champion


def test_compare_table(registry) -> None:
    settings, (first, second) = registry
    table = compare(settings)
    churn = table[table["model"] == "persona-churn"].set_index("version")
    assert list(churn.index) == [int(first.version), int(second.version)]
    assert churn.loc[int(first.version), "roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert churn.loc[int(second.version), "service"] == "churn_v1"
    assert "champion" in churn.loc[int(champion_version(settings, "churn")), "aliases"]


def test_load_champion_and_missing_champion(registry) -> None:
    settings, (first, _) = registry
    loaded = load_champion(settings, "churn")
    assert loaded.version == champion_version(settings, "churn") and loaded.feature_service == "churn_v1"
    data = make_data(seed=0)
    assert loaded.bundle.predict_proba(data.test[:3]).shape == (3,)
    with pytest.raises(RegistryError, match="no champion for persona-conversion"):
        load_champion(settings, "conversion")


def test_champion_loads_without_training_code(registry) -> None:
    settings, _ = registry
    uri = settings.url(settings.mlflow.tracking_uri)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["training"] = None  # importing training would fail: the model must not need it
        import mlflow
        mlflow.set_tracking_uri({uri!r})
        model = mlflow.pyfunc.load_model("models:/persona-churn@champion")
        bundle = model.unwrap_python_model().bundle
        print(type(bundle).__module__, type(bundle).__name__, bundle.features)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cloudpickle" not in out.stderr and "Warning" not in out.stderr, out.stderr[-2000:]
    assert "models.classifier ClassifierBundle ['recency_days', 'monetary_365d', 'region']" in out.stdout

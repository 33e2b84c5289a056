"""The gate is honest and auditable: a first model promotes, an identical retrain ties and is refused,
a forced promotion needs a reason, a rollback restores the previous champion, and `persona promote
--history` shows every one of those, in order. Real models, real MLflow, the state DB's history table."""

from __future__ import annotations

import pytest

from artifacts.registry import champion_version
from core.errors import RegistryError
from persona.cli import main
from tests.model.test_gate_shuffled_labels import make_data
from training.jobs import evaluate_and_register, fit_classifiers
from training.registry import history, promote_forced, rollback

pytestmark = pytest.mark.slow


def test_promote_tie_force_rollback_and_history(settings, monkeypatch, capsys) -> None:
    data = make_data(seed=3)
    model, baseline = fit_classifiers(data, settings)
    first = evaluate_and_register(
        settings, data=data, model=model, baseline=baseline, store=None, promote=True
    )
    assert first.promoted

    # the same data and seed again: equal metrics on the same window are a tie, and a tie never promotes
    model, baseline = fit_classifiers(data, settings)
    tie = evaluate_and_register(settings, data=data, model=model, baseline=baseline, store=None, promote=True)
    assert tie.metrics["pr_auc"] == pytest.approx(first.metrics["pr_auc"])
    assert not tie.promoted and "does not beat champion" in tie.decision.reason
    assert champion_version(settings, "churn") == first.version

    with pytest.raises(RegistryError, match="needs a reason"):
        promote_forced(settings, "churn", version=tie.version, reason=" ")
    assert promote_forced(settings, "churn", version=tie.version, reason="ops: try v2 on the EU shop") == (
        first.version
    )
    assert rollback(settings, "churn") == (tie.version, first.version)

    events = history(settings, "churn")
    assert [(e.event, e.decision, e.from_version, e.to_version) for e in events] == [
        ("gate", "promote", None, first.version),
        ("promote", None, None, first.version),
        ("gate", "reject", first.version, tie.version),
        ("force", None, first.version, tie.version),
        ("rollback", None, tie.version, first.version),
    ]
    assert events[1].actor.startswith("gate (") and events[3].reason == "ops: try v2 on the EU shop"
    assert events[2].metrics["challenger"] == pytest.approx(events[2].metrics["champion"])
    assert events[3].metrics["gate_decision"] == "reject"  # a forced promotion records what it overrode
    assert [e.at for e in events] == sorted(e.at for e in events)

    monkeypatch.setenv("PERSONA_DATA_DIR", str(settings.data_dir))
    assert main(["promote", "--history", "churn"]) == 0
    out = capsys.readouterr().out
    lines = [line.split()[2] for line in out.splitlines()[1:] if line[:2] == "20"]
    assert lines == ["gate", "promote", "gate", "force", "rollback"]
    assert "reason: ops: try v2 on the EU shop" in out and "does not beat champion" in out
    assert main(["promote", "churn", "--force", tie.version]) == 2
    assert "--force needs --reason" in capsys.readouterr().err

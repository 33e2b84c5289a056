"""Behaviour: the gate refuses a deliberately worse model (trained on shuffled labels), says why, and
keeps the champion; the first model becomes champion. Real models, real MLflow (SQLite in a tmp dir)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artifacts.registry import champion_version, client
from training.jobs import evaluate_and_register, fit_classifiers
from training.splits import TimeSplit
from training.trainsets import ClassifierData

SNAPS = [pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=90 * i) for i in range(4)]


def make_data(*, n: int = 700, seed: int = 0, shuffle_train: bool = False) -> ClassifierData:
    """Churn-like data: the label follows recency and spend (plus noise); snapshots 90 days apart, purged split."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in SNAPS:
        recency = rng.integers(0, 365, n)
        spend = rng.gamma(2.0, 50.0, n)
        # an interaction (xor) a tree model finds and a linear baseline cannot
        risky = (recency > 200) ^ (spend > 100)
        label = (rng.random(n) < np.where(risky, 0.8, 0.15)).astype("int64")
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"P{i:012x}" for i in range(n)],
                    "event_timestamp": t,
                    "label": label,
                    "recency_days": recency,
                    "monetary_365d": spend,
                    "region": rng.choice(["north", "south", "east"], n).astype(object),
                }
            )
        )
    full = pd.concat(frames, ignore_index=True)
    ts = full["event_timestamp"]
    train, valid, test = (
        full[ts <= SNAPS[1]].reset_index(drop=True),
        full[ts == SNAPS[2]].reset_index(drop=True),
        full[ts == SNAPS[3]].reset_index(drop=True),
    )
    if shuffle_train:
        shuffler = np.random.default_rng(seed + 1)
        train["label"] = shuffler.permutation(train["label"].to_numpy())
        valid["label"] = shuffler.permutation(valid["label"].to_numpy())
    entity = ["customer_id", "event_timestamp", "label"]
    split = TimeSplit(train=train[entity], valid=valid[entity], test=test[entity], horizon_days=90)
    return ClassifierData(
        kind="churn",
        service="churn_v1",
        split=split,
        train=train,
        valid=valid,
        test=test,
        features=["recency_days", "monetary_365d", "region"],
        categorical=["region"],
    )


@pytest.mark.slow
def test_shuffled_challenger_is_refused_and_recorded(settings) -> None:
    good = make_data()
    model, baseline = fit_classifiers(good, settings)
    first = evaluate_and_register(
        settings, data=good, model=model, baseline=baseline, store=None, promote=True
    )
    assert first.promoted and first.decision.reason.startswith("first model")
    assert first.metrics["roc_auc"] > 0.75  # the signal is strong; a real model finds it
    assert champion_version(settings, "churn") == first.version

    bad = make_data(shuffle_train=True)
    model_b, baseline_b = fit_classifiers(bad, settings)
    second = evaluate_and_register(
        settings, data=bad, model=model_b, baseline=baseline_b, store=None, promote=True
    )
    assert not second.promoted and not second.decision.promote
    assert second.metrics["roc_auc"] < 0.65  # shuffled labels carry no signal
    assert champion_version(settings, "churn") == first.version  # unchanged
    # the champion was scored on the challenger's test window (same rows) and recorded
    assert second.extra["champion"]["roc_auc"] == pytest.approx(first.metrics["roc_auc"])

    mv = client(settings).get_model_version("persona-churn", second.version)
    assert mv.tags["gate.decision"] == "reject"
    assert mv.tags["gate.champion_at_decision"] == first.version
    assert mv.tags["feast.feature_service"] == "churn_v1"
    assert "below floor" in mv.tags["gate.reason"] or "worse than" in mv.tags["gate.reason"]
    compared = json.loads(mv.tags["gate.compared"])
    assert compared["champion"] == pytest.approx(first.metrics["pr_auc"])
    assert set(mv.aliases) == {"challenger"}

"""Behavioural tests of the churn and conversion models on synthetic data with known relations:
direction (other features equal), invariance, minimum functionality and calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.classifier import fit_baseline, fit_classifier
from models.metrics import binary_metrics

FEATURES = ["recency_days", "frequency_365d", "monetary_365d", "email_clicks_90d", "region"]


def customers(n: int, seed: int) -> pd.DataFrame:
    """Churn rises with recency and falls with frequency; conversion rises with email clicks.
    Positives are rare (about 10%), so the up-weighted model is miscalibrated before calibration."""
    rng = np.random.default_rng(seed)
    recency = rng.uniform(0, 365, n)
    frequency = rng.poisson(4, n).astype(float)
    monetary = frequency * rng.lognormal(4, 0.5, n)
    clicks = rng.poisson(3, n).astype(float)
    region = rng.choice(["north", "south", "east"], n)
    churn_logit = -4.0 + 0.012 * recency - 0.25 * frequency + (region == "east") * 0.3
    conv_logit = -5.5 + 1.0 * clicks - 0.002 * recency
    return pd.DataFrame(
        {
            "recency_days": recency,
            "frequency_365d": frequency,
            "monetary_365d": monetary,
            "email_clicks_90d": clicks,
            "region": region,
            "email": [f"user{i}@example.com" for i in range(n)],  # present in the frame, never a feature
            "churned": (rng.random(n) < 1 / (1 + np.exp(-churn_logit))).astype(int),
            "converted": (rng.random(n) < 1 / (1 + np.exp(-conv_logit))).astype(int),
        }
    )


@pytest.fixture(scope="module")
def data():
    return customers(6000, 1), customers(2000, 2), customers(2000, 3)


@pytest.fixture(scope="module")
def churn_models(data):
    train, valid, _ = data
    kw = {
        "kind": "churn",
        "train": train,
        "valid": valid,
        "features": FEATURES,
        "label": "churned",
        "categorical": ["region"],
        "seed": 5,
    }
    return fit_classifier(**kw), fit_baseline(**kw)


@pytest.fixture(scope="module")
def conversion_model(data):
    train, valid, _ = data
    return fit_classifier(
        kind="conversion",
        train=train,
        valid=valid,
        features=FEATURES,
        label="converted",
        categorical=["region"],
        seed=5,
    )


def _sweep(bundle, rows: pd.DataFrame, column: str, grid) -> np.ndarray:
    """Mean predicted probability over `rows` with `column` set to each grid value (others unchanged)."""
    return np.array([bundle.predict_proba(rows.assign(**{column: value})).mean() for value in grid])


def test_churn_risk_rises_with_recency_other_features_equal(churn_models, data):
    rows = data[2].iloc[:300]
    for bundle in churn_models:
        curve = _sweep(bundle, rows, "recency_days", [10, 90, 180, 270, 350])
        assert np.all(np.diff(curve) > -0.01), curve  # non-decreasing up to tree noise
        assert curve[-1] - curve[0] > 0.15, curve


def test_churn_risk_falls_with_frequency(churn_models, data):
    rows = data[2].iloc[:300]
    model, _ = churn_models
    curve = _sweep(model, rows, "frequency_365d", [0, 2, 4, 8])
    assert curve[0] > curve[-1] + 0.05, curve


def test_conversion_rises_with_engagement(conversion_model, data):
    curve = _sweep(conversion_model, data[2].iloc[:300], "email_clicks_90d", [0, 2, 4, 6, 9])
    assert np.all(np.diff(curve) > -0.01), curve
    assert curve[-1] - curve[0] > 0.3, curve


def test_changing_a_column_the_model_does_not_use_changes_nothing(churn_models, data):
    rows = data[2].iloc[:200]
    changed = rows.assign(email="someone.else@example.org", churned=1 - rows["churned"])
    for bundle in churn_models:
        assert np.array_equal(bundle.predict_proba(rows), bundle.predict_proba(changed))
        assert bundle.reasons(rows.iloc[:3]) == bundle.reasons(changed.iloc[:3])


def test_minimum_functionality_on_an_easy_problem(churn_models, conversion_model, data):
    test = data[2]
    for bundle in churn_models:
        assert binary_metrics(test["churned"], bundle.predict_proba(test))["roc_auc"] > 0.75
    conv = binary_metrics(test["converted"], conversion_model.predict_proba(test))
    assert conv["roc_auc"] > 0.8 and conv["lift_top_decile"] > 2.5


def test_calibration_improves_brier_on_a_miscalibrated_model(churn_models, data):
    test = data[2]
    y = test["churned"].to_numpy()
    for bundle in churn_models:
        raw = binary_metrics(y, bundle.predict_uncalibrated(test))
        calibrated = binary_metrics(y, bundle.predict_proba(test))
        # Up-weighting the rare positives inflates the raw probabilities; calibration undoes it.
        raw_mean, calibrated_mean = (
            bundle.predict_uncalibrated(test).mean(),
            bundle.predict_proba(test).mean(),
        )
        assert raw_mean > y.mean() + 0.05
        assert calibrated["brier"] < raw["brier"] - 0.002
        assert calibrated_mean == pytest.approx(y.mean(), abs=0.03)
        # Platt scaling is monotone: ranking metrics do not move.
        assert calibrated["roc_auc"] == pytest.approx(raw["roc_auc"], abs=1e-9)

"""The registered candidate is LightGBM unless the logistic baseline ranks better on VALIDATION data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.classifier import fit_baseline, fit_classifier
from training.jobs import select_candidate


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": y})


def _fit(kind_fit, train: pd.DataFrame, valid: pd.DataFrame):  # type: ignore[no-untyped-def]
    return kind_fit(kind="churn", train=train, valid=valid, features=["a", "b", "c"], label="label", seed=1)


def test_lightgbm_kept_when_it_ranks_at_least_as_well() -> None:
    train, valid = _frame(2000, 1), _frame(800, 2)
    good = _fit(fit_classifier, train, valid)
    garbage = _fit(
        fit_baseline, train.assign(label=np.random.default_rng(3).permutation(train["label"])), valid
    )
    chosen, why = select_candidate(good, garbage, valid=valid, metric="roc_auc")
    assert chosen is good
    assert why.startswith("lightgbm")


def test_baseline_chosen_when_it_ranks_better_on_validation() -> None:
    train, valid = _frame(2000, 1), _frame(800, 2)
    shuffled = train.assign(label=np.random.default_rng(3).permutation(train["label"]))
    weak_lightgbm = _fit(fit_classifier, shuffled, valid)  # learned noise
    baseline = _fit(fit_baseline, train, valid)
    chosen, why = select_candidate(weak_lightgbm, baseline, valid=valid, metric="pr_auc")
    assert chosen is baseline
    assert why.startswith("logistic baseline: validation pr_auc")

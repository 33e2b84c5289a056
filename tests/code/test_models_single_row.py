"""models.single_row: LightGBM's single-row path gives exactly `Booster.predict`'s numbers (raw score and
TreeSHAP contributions, bit for bit), for binary and regression boosters with missing values, a
categorical split and a best iteration below the trees stored; and the estimators using it still pickle."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from models.classifier import LightGBMEstimator
from models.single_row import SingleRow, single_row_of

ROWS = 3000


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 6))
    x[:, 5] = rng.integers(0, 5, size=ROWS)  # a categorical code
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take each split's default direction
    signal = x[:, 0] - 0.5 * np.nan_to_num(x[:, 1]) + (x[:, 5] == 3)
    return x, signal


@pytest.fixture(scope="module", params=["binary", "regression"])
def booster(request):  # type: ignore[no-untyped-def]
    x, signal = _data(1)
    rng = np.random.default_rng(2)
    if request.param == "binary":
        y = (rng.random(ROWS) < 1 / (1 + np.exp(-np.nan_to_num(signal)))).astype(float)
    else:
        y = np.nan_to_num(signal) + rng.normal(scale=0.3, size=ROWS)
    params = {"objective": request.param, "num_leaves": 15, "verbose": -1, "seed": 1, "num_threads": 1}
    train = lgb.Dataset(x[:2000], y[:2000], categorical_feature=[5])
    valid = lgb.Dataset(x[2000:], y[2000:], reference=train)
    out = lgb.train(params, train, 300, valid_sets=[valid], callbacks=[lgb.early_stopping(5, verbose=False)])
    # `Booster.predict` stops at `best_iteration` when one is set (a booster kept from early stopping
    # with its later trees): the single-row path must stop there too
    assert out.current_iteration() > 10
    out.best_iteration = out.current_iteration() - 3
    return out


def test_single_row_equals_booster_predict_bit_for_bit(booster) -> None:  # type: ignore[no-untyped-def]
    x, _ = _data(3)  # rows the booster never saw
    fast = SingleRow(booster)
    raw = np.concatenate([fast.raw(x[i : i + 1]) for i in range(ROWS)])
    contrib = np.vstack([fast.contributions(x[i : i + 1]) for i in range(ROWS)])
    np.testing.assert_array_equal(raw, booster.predict(x, raw_score=True))
    np.testing.assert_array_equal(contrib, booster.predict(x, pred_contrib=True))
    # and what the serving path asked for before: one row through Booster.predict
    for i in range(0, ROWS, 97):
        one = x[i : i + 1]
        assert fast.raw(one).tolist() == booster.predict(one, raw_score=True, num_threads=1).tolist()
        assert (
            fast.contributions(one).tolist()
            == booster.predict(one, pred_contrib=True, num_threads=1).tolist()
        )


def test_single_row_refuses_a_row_of_the_wrong_width(booster) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="expected one row of 6 features"):
        SingleRow(booster).raw(np.zeros((1, 5)))


def test_estimator_pickles_after_using_the_single_row_path(booster) -> None:  # type: ignore[no-untyped-def]
    estimator = LightGBMEstimator(booster)
    x, _ = _data(4)
    first = estimator.raw(x[:1])
    assert single_row_of(estimator) is single_row_of(estimator)  # built once
    copy = pickle.loads(pickle.dumps(estimator))
    assert "_single_row" not in copy.__dict__
    assert copy.raw(x[:1]).tolist() == first.tolist()
    np.testing.assert_array_equal(copy.contributions(x[:1]), estimator.contributions(x[:1]))

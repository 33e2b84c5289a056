"""Value models: metrics by hand, histories from features, the rate baseline, and the LightGBM regressor
(total calibrated on validation, tiers cut there, value rising with purchase frequency)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from models.clv import (
    fit_btyd_value,
    fit_clv_regressor,
    history_from_features,
    rate_value,
    value_metrics,
)


def test_value_metrics_by_hand():
    actual = [0.0, 10.0, 0.0, 30.0, 20.0]
    predicted = [5.0, 5.0, 5.0, 25.0, 10.0]
    m = value_metrics(actual, predicted)
    assert m["mae"] == pytest.approx((5 + 5 + 5 + 5 + 10) / 5)
    assert m["rmse"] == pytest.approx(np.sqrt((25 * 4 + 100) / 5))
    assert m["total_ratio"] == pytest.approx(50 / 60)
    assert m["capture_top_decile"] == pytest.approx(30 / 60)  # ceil(0.5) = 1 row: the one predicted 25
    assert m["spearman_buyers"] == pytest.approx(1.0)  # buyers 10, 30, 20 ranked 5, 25, 10
    assert m["buyer_rate"] == pytest.approx(0.6)


def test_value_metrics_refuse_bad_input():
    with pytest.raises(ValidationFailed, match="2 actual values but 3"):
        value_metrics([1, 2], [1, 2, 3])
    with pytest.raises(ValidationFailed, match="predicted holds a non-finite value in row 1"):
        value_metrics([1, 2], [1, np.nan])


def _features(orders, recency, tenure, monetary):
    return pd.DataFrame(
        {
            "orders_lifetime": orders,
            "recency_days": recency,
            "tenure_days": tenure,
            "monetary_lifetime": monetary,
        }
    )


def test_history_from_features_by_hand():
    h = history_from_features(
        _features([3, 1, np.nan], [10.0, 50.0, np.nan], [100.0, 50.0, np.nan], [90.0, 20.0, 0.0])
    )
    assert h.x.tolist() == [2.0, 0.0, 0.0]
    assert h.T.tolist() == [100.0, 50.0, 0.0]
    assert h.t_x.tolist() == [90.0, 0.0, 0.0]
    assert h.m[:2].tolist() == [30.0, 20.0] and np.isnan(h.m[2])


def test_rate_baseline_by_hand():
    frame = _features([3, 1], [10.0, 5.0], [100.0, 10.0], [90.0, 20.0])
    # 90 / 100 * 365; the newcomer's 10 days are floored at 30: 20 / 30 * 365
    assert rate_value(horizon_days=365).predict(frame) == pytest.approx([328.5, 20 / 30 * 365])


def _world(n: int, seed: int) -> pd.DataFrame:
    """Customers whose next-period spend grows with their past frequency, with a seeded noise."""
    rng = np.random.default_rng(seed)
    orders = rng.integers(1, 12, n).astype(float)
    tenure = rng.uniform(60, 700, n)
    recency = rng.uniform(0, 1, n) * tenure
    aov = rng.gamma(4, 10, n)
    rate = orders / tenure * np.exp(-recency / 200)
    buys = rng.poisson(rate * 180)
    return pd.DataFrame(
        {
            "orders_lifetime": orders,
            "recency_days": recency,
            "tenure_days": tenure,
            "monetary_lifetime": orders * aov,
            "spend": buys * aov,
        }
    )


def test_regressor_calibrates_total_cuts_tiers_and_follows_frequency():
    train, valid, test = _world(4000, 1), _world(2000, 2), _world(2000, 3)
    features = ["orders_lifetime", "recency_days", "tenure_days", "monetary_lifetime"]
    offset = fit_btyd_value(train, horizon_days=180)
    model = fit_clv_regressor(
        train=train,
        valid=valid,
        features=features,
        label="spend",
        horizon_days=180,
        offset=offset,
        seed=7,
        params={"num_threads": 1, "learning_rate": 0.1, "num_boost_round": 300},
    )
    # the total on validation is calibrated exactly
    assert model.predict(valid).sum() == pytest.approx(valid["spend"].sum(), rel=1e-9)
    # tiers: about 10% top and 20% high on validation
    shares = pd.Series(model.tiers(model.predict(valid))).value_counts(normalize=True)
    assert shares["top"] == pytest.approx(0.10, abs=0.01)
    assert shares["high"] == pytest.approx(0.20, abs=0.01)
    # held out: beats the rate baseline on MAE, and ranks revenue better than chance (10%)
    ours = value_metrics(test["spend"], model.predict(test))
    naive = value_metrics(test["spend"], rate_value(horizon_days=180).predict(test))
    assert ours["mae"] < naive["mae"]
    assert ours["capture_top_decile"] > 0.3
    # direction: a recent last purchase (other things equal) is worth more than a long silence
    probe = test[test["tenure_days"] > 400].head(200)
    recent, lapsed = probe.assign(recency_days=5.0), probe.assign(recency_days=350.0)
    assert (model.predict(recent) > model.predict(lapsed)).mean() > 0.9
    reasons = model.reasons(probe.head(3))
    assert len(reasons) == 3 and all(len(r) == 3 for r in reasons)
    assert {r["feature"] for r in reasons[0]} <= set(features)


def test_regressor_refuses_negative_spend_with_its_row():
    train = _world(500, 1)
    bad = train.copy()
    bad.loc[7, "spend"] = -1.0
    with pytest.raises(ValidationFailed, match="row 7"):
        fit_clv_regressor(
            train=bad, valid=train, features=["orders_lifetime"], label="spend", horizon_days=180
        )


def test_serving_columns_give_the_frame_predictions_and_the_pandas_reference():
    """Serving feeds the value model numpy columns (as the online read gives them: floats with NaN, a
    category as objects with None); training feeds frames. Both equal the pandas encoding of before."""
    from models.classifier import _encode_frame
    from models.clv import _log_offset
    from serving.scoring import columns_of

    train, valid = _world(3000, 1), _world(1500, 2)
    rng = np.random.default_rng(4)
    for frame in (train, valid):
        frame["region"] = rng.choice(["north", "south", "east"], size=len(frame)).astype(object)
    test = _world(400, 3)
    test["region"] = rng.choice(["north", "south", "west"], size=len(test)).astype(object)  # west: unseen
    test.loc[::7, "region"] = None
    test.loc[::5, "recency_days"] = np.nan
    test["orders_lifetime"] = pd.array(test["orders_lifetime"].astype(int), dtype="Int64")
    test.loc[3, "orders_lifetime"] = pd.NA
    features = ["orders_lifetime", "recency_days", "tenure_days", "monetary_lifetime", "region"]
    offset = fit_btyd_value(train, horizon_days=180)
    model = fit_clv_regressor(
        train=train,
        valid=valid,
        features=features,
        label="spend",
        horizon_days=180,
        offset=offset,
        categorical=["region"],
        seed=7,
        params={"num_threads": 1, "learning_rate": 0.1, "num_boost_round": 100},
    )
    reference_x = _encode_frame(
        test, features=features, categories=model.metadata["categories"], where="reference"
    )
    raw = model.booster.predict(reference_x, raw_score=True, num_threads=1)
    reference = np.exp(raw + _log_offset(offset.predict(test, 180.0))) * model.scale
    from_frame = model.predict(test)
    for rows in (slice(None), slice(0, 1), slice(5, 9)):
        part = test.iloc[rows]
        from_columns = model.predict_columns(columns_of(part[model.inputs()]))
        np.testing.assert_allclose(from_columns, reference[rows], rtol=1e-12, atol=0)
    np.testing.assert_allclose(from_frame, reference, rtol=1e-12, atol=0)
    assert np.isfinite(from_frame).all() and len(set(np.round(from_frame, 6))) > 100
    # reasons: the same features, values and contributions from both inputs
    head = test.iloc[:12]
    by_frame = model.reasons(head)
    by_columns = model.reasons_columns(columns_of(head[model.reason_inputs()]))
    assert by_frame == by_columns
    # the reasons are the top TreeSHAP contributions of the full pass (raw value included), exactly
    _, contrib = model.raw_and_contributions_columns(columns_of(head[model.inputs()]))
    for i, reasons in enumerate(by_columns):
        top = np.argsort(-np.abs(contrib[i]), kind="stable")[: len(reasons)]
        assert [r["feature"] for r in reasons] == [features[j] for j in top]
        assert [r["contribution"] for r in reasons] == [float(contrib[i, j]) for j in top]
    assert any(r["value"] is None for rows in by_frame for r in rows)  # NaN and unseen are missing
    assert offset.reasons(head) == offset.reasons_columns(columns_of(head[offset.reason_inputs()]))
    naive = rate_value(horizon_days=180)
    np.testing.assert_allclose(naive.predict_columns(columns_of(test)), naive.predict(test), rtol=0, atol=0)

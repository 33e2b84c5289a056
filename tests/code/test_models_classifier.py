"""models.classifier: encoding, calibration, tiers, reasons, pickling, errors (small hand-checked data)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from models.classifier import (
    Calibrator,
    ClassifierBundle,
    LinearEstimator,
    fit_baseline,
    fit_calibrator,
    fit_classifier,
)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    logit = 2.0 * signal + np.where(plan == "pro", 1.5, 0.0) - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    noise = rng.normal(size=n)
    noise[::17] = np.nan
    return pd.DataFrame({"signal": signal, "noise": noise, "plan": plan, "y": y})


@pytest.fixture(scope="module")
def fitted():
    train, valid = _frame(1500, 1), _frame(600, 2)
    kwargs = {
        "kind": "churn",
        "train": train,
        "valid": valid,
        "features": ["signal", "noise", "plan"],
        "label": "y",
        "categorical": ["plan"],
        "seed": 3,
    }
    return fit_classifier(**kwargs), fit_baseline(**kwargs), valid


def _bundle(cuts=(0.8, 0.5)) -> ClassifierBundle:
    return ClassifierBundle(
        kind="churn",
        features=["a"],
        categorical=[],
        tier_names=("high", "medium", "low"),
        tier_cuts=cuts,
        metadata={"categories": {}},
    )


def test_tiers_follow_the_cuts_inclusively():
    tiers = _bundle().tiers(np.array([0.9, 0.8, 0.6, 0.5, 0.2]))
    assert tiers.tolist() == ["high", "high", "medium", "medium", "low"]


def test_platt_and_isotonic_calibrators_by_hand():
    platt = Calibrator("platt", slope=2.0, intercept=-1.0)
    assert platt.apply(np.array([0.5, 1.0])) == pytest.approx([0.5, 1 / (1 + np.exp(-1.0))])
    iso = Calibrator("isotonic", knots_x=np.array([0.0, 1.0, 2.0]), knots_y=np.array([0.1, 0.5, 0.9]))
    assert iso.apply(np.array([0.5, -3.0, 5.0])) == pytest.approx([0.3, 0.1, 0.9])


def test_platt_fit_recovers_a_known_sigmoid():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=20000)
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-(0.5 * raw - 1.0)))).astype(float)
    cal = fit_calibrator(raw, y, method="platt")
    assert cal.slope == pytest.approx(0.5, abs=0.05)
    assert cal.intercept == pytest.approx(-1.0, abs=0.05)


def test_linear_estimator_by_hand():
    est = LinearEstimator(
        numeric_idx=np.array([0]),
        medians=np.array([1.0]),
        means=np.array([2.0]),
        scales=np.array([2.0]),
        numeric_coef=np.array([3.0]),
        categorical_idx=np.array([1]),
        categorical_coef=[np.array([0.5, -0.5])],
        intercept=0.1,
    )
    x = np.array([[4.0, 1.0], [np.nan, np.nan]])
    # row 0: (4-2)/2*3 = 3, category 1 -> -0.5; row 1: median 1 -> (1-2)/2*3 = -1.5, unknown category -> 0.
    assert est.contributions(x).tolist() == [[3.0, -0.5], [-1.5, 0.0]]
    assert est.raw(x) == pytest.approx([2.6, -1.4])


def test_encode_maps_categories_and_unknowns(fitted):
    model, _, _ = fitted
    assert model.metadata["categories"]["plan"] == ["basic", "plus", "pro"]
    x = model.encode(pd.DataFrame({"signal": [0.5, 1], "noise": [None, 2], "plan": ["pro", "enterprise"]}))
    assert x[0].tolist()[:1] == [0.5] and np.isnan(x[0, 1]) and x[0, 2] == 2.0
    assert np.isnan(x[1, 2])  # an unseen category is missing, not an error


def test_array_and_frame_paths_agree_and_survive_pickling(fitted):
    model, baseline, valid = fitted
    for bundle in (model, baseline):
        p_frame = bundle.predict_proba(valid)
        p_array = bundle.predict_proba_array(bundle.encode(valid))
        assert np.array_equal(p_frame, p_array)
        assert ((p_frame > 0) & (p_frame < 1)).all()
        clone = pickle.loads(pickle.dumps(bundle))
        assert np.allclose(clone.predict_proba(valid), p_frame)
        one = bundle.predict_proba_array(bundle.encode(valid.iloc[:1])[0])  # a 1-D row is accepted
        assert one.shape == (1,) and one[0] == pytest.approx(p_frame[0])


def test_tier_cuts_give_the_declared_shares_on_validation(fitted):
    model, baseline, valid = fitted
    # LightGBM's scores are piecewise constant, so ties at a cut may move a few rows up a tier.
    for bundle, tolerance in ((model, 0.03), (baseline, 0.01)):
        tiers = bundle.tiers(bundle.predict_proba(valid))
        assert (tiers == "high").mean() == pytest.approx(0.10, abs=tolerance)
        assert (tiers == "medium").mean() == pytest.approx(0.20, abs=tolerance)
        assert bundle.tier_cuts[0] >= bundle.tier_cuts[1]


def test_metadata_records_sizes_balance_and_seed(fitted):
    model, baseline, _ = fitted
    assert model.metadata["n_train"] == 1500 and model.metadata["n_valid"] == 600
    assert model.metadata["seed"] == 3 and model.metadata["model"] == "lightgbm"
    assert model.metadata["params"]["scale_pos_weight"] == pytest.approx(
        (1 - model.metadata["train_positive_rate"]) / model.metadata["train_positive_rate"]
    )
    assert baseline.metadata["model"] == "logistic" and baseline.tier_names == ("high", "medium", "low")


def test_lightgbm_reasons_are_sorted_contributions_that_add_up(fitted):
    model, _, valid = fitted
    rows = valid.iloc[:5]
    reasons = model.reasons(rows, top_k=3)
    contrib = model.estimator.booster.predict(model.encode(rows), pred_contrib=True)
    raw = model.estimator.raw(model.encode(rows))
    assert np.allclose(contrib.sum(axis=1), raw)  # contributions + bias = raw score
    for i, row in enumerate(reasons):
        assert len(row) == 3
        sizes = [abs(r["contribution"]) for r in row]
        assert sizes == sorted(sizes, reverse=True)
        for r in row:
            j = model.features.index(r["feature"])
            assert r["contribution"] == pytest.approx(contrib[i, j])
            original = rows.iloc[i][r["feature"]]
            assert r["value"] == (None if pd.isna(original) else original)
    # The strongest driver of this synthetic label is `signal`.
    top = [row[0]["feature"] for row in model.reasons(valid, top_k=1)]
    assert top.count("signal") > len(top) / 2


def test_baseline_reasons_are_coefficient_times_standardized_value(fitted):
    _, baseline, valid = fitted
    est = baseline.estimator
    row = valid.iloc[[0]]
    x = baseline.encode(row)
    reasons = {r["feature"]: r["contribution"] for r in baseline.reasons(row, top_k=3)[0]}
    signal_j = baseline.features.index("signal")
    pos = list(est.numeric_idx).index(signal_j)
    expected = est.numeric_coef[pos] * (x[0, signal_j] - est.means[pos]) / est.scales[pos]
    assert reasons["signal"] == pytest.approx(expected)
    assert reasons["plan"] == pytest.approx(est.categorical_coef[0][int(x[0, 2])])


def test_isotonic_option_is_used_when_asked():
    train, valid = _frame(800, 4), _frame(400, 5)
    bundle = fit_classifier(
        kind="conversion",
        train=train,
        valid=valid,
        features=["signal", "plan"],
        label="y",
        categorical=["plan"],
        seed=1,
        params={"calibration": "isotonic", "tier_shares": (0.2, 0.3)},
    )
    assert bundle.calibrator.method == "isotonic" and bundle.tier_names == ("hot", "warm", "cold")
    assert bundle.metadata["tier_shares"] == [0.2, 0.3]
    p = bundle.predict_proba(valid)
    assert p.min() >= 0 and p.max() <= 1


def test_training_uses_one_thread_by_default_and_more_give_the_same_model(fitted):
    """One LightGBM thread by default (OpenMP threads spin on busy cores); `num_threads` in params
    overrides it, and the trees do not depend on it (deterministic, row-wise histograms)."""
    bundle, _, valid = fitted
    assert bundle.metadata["params"]["num_threads"] == 1
    kwargs = {
        "kind": "churn",
        "train": _frame(1500, 1),
        "valid": valid,
        "features": ["signal", "noise", "plan"],
        "label": "y",
        "categorical": ["plan"],
        "seed": 3,
    }
    both_cores = fit_classifier(**kwargs, params={"num_threads": 2})
    assert both_cores.metadata["params"]["num_threads"] == 2
    assert both_cores.metadata["best_iteration"] == bundle.metadata["best_iteration"]
    np.testing.assert_array_equal(both_cores.predict_proba(valid), bundle.predict_proba(valid))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "upsell"}, "kind must be one of"),
        ({"features": ["signal", "missing_col", "plan"]}, r"missing column\(s\) \['missing_col'\]"),
        ({"categorical": ["other"]}, r"categorical column\(s\) \['other'\] are not in features"),
        ({"label": "signal"}, "also listed as a feature"),
        ({"features": ["plan"], "categorical": []}, "feature 'plan' must be numeric: row 0 holds"),
    ],
)
def test_bad_arguments_are_named(change, message):
    train, valid = _frame(200, 6), _frame(100, 7)
    kwargs = {
        "kind": "churn",
        "train": train,
        "valid": valid,
        "features": ["signal", "plan"],
        "label": "y",
        "categorical": ["plan"],
        "seed": 1,
        **change,
    }
    with pytest.raises(ValidationFailed, match=message):
        fit_classifier(**kwargs)


def test_single_class_label_is_refused_with_the_split_named():
    train, valid = _frame(200, 6), _frame(100, 7)
    valid["y"] = 0
    with pytest.raises(ValidationFailed, match="churn validation data: label 'y' has a single class"):
        fit_baseline(kind="churn", train=train, valid=valid, features=["signal"], label="y", seed=1)


def test_wrong_array_width_is_refused(fitted):
    model, _, _ = fitted
    with pytest.raises(ValidationFailed, match="expects 3 feature columns"):
        model.predict_proba_array(np.zeros((2, 2)))


def test_missing_category_gets_its_own_code_when_training_had_gaps():
    train, valid = _frame(400, 8), _frame(200, 9)
    train.loc[train.index[:40], "plan"] = None
    bundle = fit_baseline(
        kind="churn",
        train=train,
        valid=valid,
        features=["signal", "plan"],
        label="y",
        categorical=["plan"],
        seed=1,
    )
    assert bundle.metadata["categories"]["plan"] == ["basic", "plus", "pro", "(missing)"]
    x = bundle.encode(pd.DataFrame({"signal": [0.0, 0.0, 0.0], "plan": [None, "plus", "gold"]}))
    assert x[:, 1].tolist()[:2] == [3.0, 1.0] and np.isnan(x[2, 1])  # gap -> its code; unseen -> NaN
    # Without gaps in training, a missing value is simply unknown.
    clean = fit_baseline(
        kind="churn",
        train=_frame(400, 8),
        valid=valid,
        features=["plan"],
        label="y",
        categorical=["plan"],
        seed=1,
    )
    assert np.isnan(clean.encode(pd.DataFrame({"plan": [None]}))[0, 0])


@pytest.mark.parametrize("rows", [1, 5, 300])  # below and above the dict-lookup threshold
def test_encode_columns_matches_encode(fitted, rows):
    """The serving path (numpy columns) encodes exactly as the DataFrame path, gaps, unseen categories,
    ints, booleans and numbers-as-objects included."""
    model, baseline, valid = fitted
    frame = valid.iloc[:rows][["signal", "noise", "plan"]].reset_index(drop=True).copy()
    frame.loc[0, "plan"] = "enterprise"  # unseen
    if rows > 1:
        frame.loc[1, "plan"] = None
        frame.loc[rows - 1, "signal"] = np.nan
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    for bundle in (model, baseline):
        expected = bundle.encode(frame)
        np.testing.assert_array_equal(bundle.encode_columns(columns), expected)
    nullable = {**columns, "plan": pd.Series(frame["plan"], dtype="string").to_numpy()}  # pd.NA gaps
    np.testing.assert_array_equal(model.encode_columns(nullable), model.encode(frame))
    as_objects = {**columns, "signal": columns["signal"].astype(object)}
    np.testing.assert_array_equal(model.encode_columns(as_objects), model.encode(frame))
    ints = {**columns, "noise": np.arange(rows, dtype=np.int64)}
    np.testing.assert_array_equal(
        model.encode_columns(ints), model.encode(frame.assign(noise=np.arange(rows, dtype=np.int64)))
    )


def test_encode_columns_names_what_is_wrong(fitted):
    model, _, valid = fitted
    with pytest.raises(ValidationFailed, match=r"missing column\(s\) \['plan'\]"):
        model.encode_columns({"signal": np.zeros(1), "noise": np.zeros(1)})
    bad = {
        "signal": np.array(["x"], dtype=object),
        "noise": np.zeros(1),
        "plan": np.array(["pro"], dtype=object),
    }
    with pytest.raises(ValidationFailed, match="'signal' must be numeric"):
        model.encode_columns(bad)


def test_explaining_gives_exactly_the_same_probabilities_and_reasons(fitted):
    model, baseline, valid = fitted
    for bundle in (model, baseline):
        x = bundle.encode(valid)
        proba, contrib = bundle.predict_with_contributions(x)
        np.testing.assert_array_equal(proba, bundle.predict_proba_array(x))  # explain never moves one
        values = valid[bundle.features].to_numpy(dtype=object)
        assert bundle.reasons_from(contrib, values, top_k=2) == bundle.reasons_encoded(x, values, top_k=2)

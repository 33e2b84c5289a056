"""models.segmentation and models.personas on small hand-checked data."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from models.personas import name_segments
from models.segmentation import _fit_scaler, adjusted_rand, fit_segmentation, segmentation_metrics

RFMT = ["recency_days", "frequency_365d", "monetary_365d", "tenure_days"]


def blobs(n_per: int, seed: int) -> pd.DataFrame:
    """Three tight groups, in original units: recent big spenders, lapsed small buyers, newcomers."""
    rng = np.random.default_rng(seed)
    centres = [(5, 30, 5000, 900), (300, 2, 50, 700), (10, 1, 40, 15)]
    rows = [np.array(c) * rng.lognormal(0, 0.1, size=(n_per, 4)) for c in centres]
    return pd.DataFrame(np.vstack(rows), columns=RFMT)


def test_scaler_by_hand():
    x = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [np.nan, 0], [2, 0], [2, 0], [2, 0], [2, 100]])
    sc = _fit_scaler(x)
    # Column 0: median 2, not skewed -> no log; quartiles of [0,1,2,2,2,2,2,2,3,4] are 2 and 2 -> IQR 0 -> std.
    assert not sc.log[0] and sc.fill[0] == 2.0 and sc.center[0] == 2.0
    assert sc.scale[0] == pytest.approx(np.std([0, 1, 2, 3, 4, 2, 2, 2, 2, 2]))
    # Column 1: non-negative and heavily skewed -> log1p; IQR 0 and std of log values > 0.
    assert sc.log[1] and sc.center[1] == 0.0
    z = sc.transform(np.array([[np.nan, 0.0], [4.0, 1e12]]))
    assert z[0, 0] == 0.0  # missing -> the median -> 0
    assert z[1, 1] == 5.0  # clipped


def test_persona_rules_name_hand_made_profiles():
    z = np.array(
        [
            [-1.0, 2.0, 2.0, 1.0],  # recent, frequent, big spender, long tenure
            [2.0, 1.0, 1.0, 0.5],  # valuable but long gone
            [-1.0, -1.0, -1.0, -2.0],  # recent, short tenure, little history
            [-1.0, -0.5, -0.5, 0.0],  # recent, modest
            [2.0, -1.0, -1.0, 0.0],  # long gone, little value
            [0.0, 0.0, 0.0, 0.0],  # the median customer
        ]
    )
    assert name_segments(z, RFMT) == [
        "high_value_loyal",
        "at_risk",
        "new",
        "potential",
        "hibernating",
        "regular",
    ]


def test_names_stay_unique_with_more_segments_than_personas():
    z = np.vstack([np.full((1, 4), v) for v in np.linspace(-2, 2, 8)])
    names = name_segments(z, RFMT)
    assert len(set(names)) == 8
    base = {"high_value_loyal", "at_risk", "new", "potential", "hibernating", "regular"}
    assert base <= set(names)
    extra = [n for n in names if n not in base]
    assert len(extra) == 2 and all(
        n.rsplit("_", 1)[0] in base and n.rsplit("_", 1)[1].isdigit() for n in extra
    )
    assert "high_value_loyal" not in name_segments(z[:3], RFMT, taken={"high_value_loyal"})


def test_blobs_are_found_and_named():
    X = blobs(100, 1)
    model = fit_segmentation(X=X, features=RFMT, k=None, k_range=(2, 5), seed=1)
    assert model.k == 3
    seg = model.predict(X)
    truth = np.repeat([0, 1, 2], 100)
    assert adjusted_rand(truth, seg) == 1.0
    personas = model.personas(seg)
    assert set(personas[:100]) == {"high_value_loyal"}
    assert set(personas[200:]) == {"new"}
    assert set(personas[100:200]) == {"hibernating"} or set(personas[100:200]) == {"at_risk"}
    # Segment ids 0..k-1, the biggest first; all three groups are the same size here.
    assert sorted(model.persona_names) == [0, 1, 2]
    assert model.metadata["silhouette_by_k"]["3"] == max(model.metadata["silhouette_by_k"].values())


def test_profiles_are_in_original_units():
    X = blobs(100, 2)
    model = fit_segmentation(X=X, features=RFMT, k=3, k_range=(2, 5), seed=1)
    prof = model.profiles()
    loyal = prof[prof["persona"] == "high_value_loyal"].iloc[0]
    assert loyal["n"] == 100 and loyal["share"] == pytest.approx(1 / 3)
    assert loyal["monetary_365d"] == pytest.approx(5000, rel=0.1)
    assert loyal["frequency_365d"] == pytest.approx(30, rel=0.1)
    assert list(prof.columns[:3]) == ["persona", "n", "share"]


def test_metrics_sizes_and_silhouette():
    X = blobs(50, 3)
    model = fit_segmentation(X=X, features=RFMT, k=3, k_range=(2, 5), seed=1)
    m = segmentation_metrics(model, X)
    assert m["n"] == 150 and m["k"] == 3
    assert sorted(m["sizes"].values()) == [50, 50, 50]
    assert m["min_share"] == pytest.approx(1 / 3) and m["max_share"] == pytest.approx(1 / 3)
    assert m["silhouette"] > 0.7


def test_missing_values_are_scored_and_the_model_pickles():
    X = blobs(50, 4)
    model = fit_segmentation(X=X, features=RFMT, k=3, k_range=(2, 5), seed=1)
    row = pd.DataFrame(
        [{"recency_days": 4.0, "frequency_365d": np.nan, "monetary_365d": 6000, "tenure_days": 800}]
    )
    clone = pickle.loads(pickle.dumps(model))
    assert clone.personas(clone.predict(row)).tolist() == ["high_value_loyal"]


def test_errors_name_the_problem():
    X = blobs(20, 5)
    with pytest.raises(ValidationFailed, match=r"missing column\(s\) \['visits_30d'\]"):
        fit_segmentation(X=X, features=[*RFMT, "visits_30d"], k=3, k_range=(2, 5), seed=1)
    with pytest.raises(ValidationFailed, match="k=60 needs"):
        fit_segmentation(X=X, features=RFMT, k=60, k_range=(2, 5), seed=1)
    model = fit_segmentation(X=X, features=RFMT, k=3, k_range=(2, 5), seed=1)
    with pytest.raises(ValidationFailed, match=r"segment id\(s\) \[7\]"):
        model.personas(np.array([0, 7]))
    with pytest.raises(ValidationFailed, match="differ in length"):
        adjusted_rand([0, 1], [0, 1, 1])


def test_adjusted_rand_by_hand():
    assert adjusted_rand([0, 0, 1, 1], [5, 5, 9, 9]) == 1.0  # same partition, other names
    # Contingency [[1,1],[1,1]]: index 0, expected 2*1*... -> ARI = (0 - 0.666..) / (2 - 0.666..) = -0.5
    assert adjusted_rand([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)


def test_predict_columns_matches_predict():
    X = blobs(40, 6)
    model = fit_segmentation(X=X, features=RFMT, k=3, k_range=(2, 5), seed=1)
    X.iloc[3, 1] = np.nan
    columns = {name: X[name].to_numpy() for name in RFMT}
    assert model.predict_columns(columns).tolist() == model.predict(X).tolist()
    one = {name: X[name].to_numpy()[:1] for name in RFMT}
    assert model.predict_columns(one).tolist() == model.predict(X.iloc[:1]).tolist()
    with pytest.raises(ValidationFailed, match=r"missing column\(s\) \['tenure_days'\]"):
        model.predict_columns({name: columns[name] for name in RFMT[:3]})

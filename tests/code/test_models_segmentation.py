"""models.segmentation and models.personas on small hand-checked data."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from models.personas import LAPSED, base_name, name_segments
from models.segmentation import (
    PROSPECT_ID,
    _fit_scaler,
    adjusted_rand,
    fit_segmentation,
    segmentation_metrics,
)

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


def _ranks(recent, frequency, monetary, tenure):
    return {"recent": recent, "frequency": frequency, "monetary": monetary, "tenure": tenure}


@pytest.mark.parametrize(
    ("ranks", "name"),
    [
        (_ranks(0.8, 0.9, 0.9, 0.8), "high_value_loyal"),
        (_ranks(0.8, 0.9, 0.9, 0.2), "high_value_new"),
        (_ranks(0.2, 0.8, 0.7, 0.7), "at_risk"),  # valuable, no longer buying
        (_ranks(0.7, 0.2, 0.2, 0.1), "new"),
        (_ranks(0.7, 0.4, 0.4, 0.6), "potential"),
        (_ranks(0.1, 0.2, 0.2, 0.6), "lost"),
        (_ranks(0.3, 0.3, 0.3, 0.6), "hibernating"),
        (_ranks(0.45, 0.45, 0.45, 0.5), "regular"),
    ],
)
def test_persona_rules_by_hand(ranks, name):
    assert base_name(ranks, may_lapse=True) == name


def test_a_segment_that_may_not_lapse_never_gets_a_lapsed_name():
    for ranks in (_ranks(0.2, 0.8, 0.7, 0.7), _ranks(0.1, 0.2, 0.2, 0.6), _ranks(0.3, 0.3, 0.3, 0.6)):
        assert base_name(ranks, may_lapse=False) not in LAPSED


def test_names_follow_ranks_against_the_population():
    # population of 4 equal groups in (recency, frequency, monetary, tenure) z-space
    groups = np.array([[-1.0, 2, 2, 1], [2, 1, 1, 0.5], [-1, -1, -1, -2], [2, -1, -1, 0]])
    population = np.repeat(groups, 50, axis=0)
    assert name_segments(groups, RFMT, population_z=population) == [
        "high_value_loyal",
        "at_risk",
        "new",
        "hibernating",  # half the population is as old (recency rank 0.25): not yet `lost` (< 0.2)
    ]


def test_clashing_names_get_qualifiers_never_numbers():
    # two recent, valuable groups that differ in tenure; two lapsed low-value ones differing in spend
    groups = np.array(
        [[-1.0, 2, 2, 2], [-1.0, 2, 2, -2], [3, -1, -2, 0], [3, -1, -1.5, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    )
    population = np.repeat(groups, 30, axis=0)
    names = name_segments(groups, RFMT, population_z=population)
    assert len(set(names)) == len(names)
    assert not any(part.isdigit() for n in names for part in n.split("_"))
    assert names[0].endswith("_loyal") and names[1].endswith("_new")
    # a name held by a matched (fixed) segment stays; the other one is qualified
    fixed = name_segments(groups[:2], RFMT, population_z=population, fixed={0: "high_value_loyal"})
    assert fixed[0] == "high_value_loyal" and fixed[1] != "high_value_loyal"


def test_a_qualifier_no_feature_of_its_concept_contradicts():
    # two recent mid segments: A has more orders in all but fewer in the last year (spread larger on
    # frequency than on spend); "frequent" for A would contradict the orders a year the profile shows
    feats = ["recency_days", "orders_lifetime", "frequency_365d", "monetary_365d", "tenure_days"]
    population = np.random.default_rng(3).normal(size=(4000, 5))
    groups = np.array([[-1.0, 1.5, -0.2, 0.1, 0], [-1.0, -1.0, 0.2, -0.1, 0]])
    names = name_segments(groups, feats, population_z=population)
    assert names[0].split("_")[0] == names[1].split("_")[0] == "potential", names
    assert not any(w in n for n in names for w in ("frequent", "occasional")), names
    assert names == ["potential_big_spenders", "potential_small_spenders"]


def test_new_is_absolute_too():
    # all four segments are old customers (>= 400 days); the lowest-tenure ones rank low on tenure only
    groups = np.array([[-1.0, 2, 2, 1], [-1.0, 2, 1.5, -2], [-1, -1, -1, -3], [2, -1, -1, 0]])
    population = np.repeat(groups, 50, axis=0)
    ranks_only = name_segments(groups, RFMT, population_z=population)
    assert ranks_only[2] == "new" and ranks_only[1] == "high_value_new"
    days = np.array([[5, 30, 5000, 1500], [5, 30, 5000, 400], [10, 1, 40, 420], [300, 1, 40, 900]], float)
    names = name_segments(groups, RFMT, population_z=population, centroids_original=days)
    assert not any(n == "new" or n.endswith("_new") or n.startswith("new_") for n in names), names
    assert names[1].startswith("high_value_loyal") and len(set(names)) == 4
    # a segment that IS young keeps its name
    days[2, 3] = 30
    assert name_segments(groups, RFMT, population_z=population, centroids_original=days)[2] == "new"


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
    assert set(personas[100:200]) <= LAPSED
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


def test_customers_without_an_order_are_prospects_not_clustered():
    X = blobs(60, 7).assign(orders_lifetime=3.0)
    prospects = pd.DataFrame(
        {
            "recency_days": [np.nan, np.nan],
            "frequency_365d": [0.0, 0.0],
            "monetary_365d": [0.0, 0.0],
            "tenure_days": [np.nan, 30.0],
            "orders_lifetime": [0.0, np.nan],
        }
    )
    features = [*RFMT, "orders_lifetime"]
    model = fit_segmentation(X=pd.concat([X, prospects]), features=features, k=3, k_range=(2, 5), seed=1)
    assert model.metadata["n_train"] == 180 and model.metadata["n_prospects_excluded"] == 2
    ids = model.predict(prospects)
    assert ids.tolist() == [PROSPECT_ID, PROSPECT_ID]
    assert model.personas(ids).tolist() == ["prospect", "prospect"]
    assert set(model.predict(X)) == {0, 1, 2}
    assert "prospect" not in set(model.persona_names.values())
    assert segmentation_metrics(model, pd.concat([X, prospects]))["n"] == 180

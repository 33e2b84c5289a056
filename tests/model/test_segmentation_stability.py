"""Segmentation stays put across retrains: a model refitted on a perturbed sample, with the champion
as reference, keeps the same customers in the same segment ids under the same persona names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.segmentation import adjusted_rand, fit_segmentation

FEATURES = ["recency_days", "frequency_365d", "monetary_365d", "tenure_days", "visits_90d"]
# recency, frequency, monetary, tenure, visits per archetype
ARCHETYPES = np.array(
    [
        [8, 25, 4000, 900, 40],  # high value, loyal
        [200, 10, 2500, 800, 2],  # valuable, lapsing
        [15, 2, 150, 500, 25],  # recent, engaged, low value
        [20, 1, 60, 20, 10],  # newcomers
        [320, 1, 40, 600, 0.5],  # long gone
    ]
)


def population(n: int, seed: int, *, noise: float = 0.25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rng.choice(len(ARCHETYPES), size=n, p=[0.15, 0.2, 0.25, 0.15, 0.25])
    values = ARCHETYPES[kind] * rng.lognormal(0, noise, size=(n, len(FEATURES)))
    frame = pd.DataFrame(values, columns=FEATURES)
    frame.loc[rng.random(n) < 0.03, "visits_90d"] = np.nan  # some customers have no event data
    return frame


@pytest.fixture(scope="module")
def champion():
    X = population(3000, 1)
    return fit_segmentation(X=X, features=FEATURES, k=5, k_range=(3, 7), seed=11), X


def test_champion_names_the_archetypes(champion):
    model, _ = champion
    assert sorted(model.persona_names.values()) == sorted(
        ["high_value_loyal", "at_risk", "potential", "new", "lost"]
    )


def test_retrain_on_a_perturbed_sample_keeps_ids_and_names(champion):
    model, X = champion
    # Next month: other customers, a different seed, slightly shifted spending; k follows the champion.
    X_new = population(3500, 2)
    X_new["monetary_365d"] *= 1.1
    challenger = fit_segmentation(
        X=X_new, features=FEATURES, k=None, k_range=(3, 7), seed=99, reference=model
    )
    assert challenger.k == model.k
    assert challenger.persona_names == model.persona_names
    before, after = model.predict(X), challenger.predict(X)
    assert adjusted_rand(before, after) > 0.9
    assert (before == after).mean() > 0.95  # same ids, not merely the same partition
    assert challenger.metadata["match_method"] == "hungarian_centroids_in_champion_space"


def test_other_features_are_matched_by_co_assignment(champion):
    model, X = champion
    fewer = FEATURES[:4]
    challenger = fit_segmentation(
        X=population(3500, 5), features=fewer, k=5, k_range=(3, 7), seed=4, reference=model, reference_X=X
    )
    assert challenger.metadata["match_method"] == "co_assignment"
    assert sorted(challenger.persona_names) == [0, 1, 2, 3, 4]
    assert adjusted_rand(model.predict(X), challenger.predict(X)) > 0.8


def test_without_reference_ids_may_move_but_partition_is_stable(champion):
    model, X = champion
    fresh = fit_segmentation(X=population(3500, 3), features=FEATURES, k=5, k_range=(3, 7), seed=5)
    assert adjusted_rand(model.predict(X), fresh.predict(X)) > 0.9
    assert sorted(fresh.persona_names.values()) == sorted(model.persona_names.values())


def test_an_extra_cluster_gets_a_fresh_id_and_an_unused_name(champion):
    model, X = champion
    grown = fit_segmentation(
        X=population(3500, 4), features=FEATURES, k=6, k_range=(3, 7), seed=3, reference=model, reference_X=X
    )
    kept = {sid: name for sid, name in grown.persona_names.items() if sid in model.persona_names}
    assert len(kept) == 5 and all(model.persona_names[sid] == name for sid, name in kept.items())
    new_ids = set(grown.persona_names) - set(model.persona_names)
    assert new_ids == {5}  # ids stay 0..k-1
    assert grown.persona_names[5] not in model.persona_names.values()
    assert not grown.persona_names[5].split("_")[-1].isdigit()

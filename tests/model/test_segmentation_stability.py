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
        ["high_value_loyal", "at_risk", "potential", "new", "hibernating"]
    )


@pytest.mark.parametrize("match_with_reference_x", [True, False])
def test_retrain_on_a_perturbed_sample_keeps_ids_and_names(champion, match_with_reference_x):
    model, X = champion
    # Next month: other customers, a different seed, slightly shifted spending.
    X_new = population(3500, 2)
    X_new["monetary_365d"] *= 1.1
    challenger = fit_segmentation(
        X=X_new,
        features=FEATURES,
        k=5,
        k_range=(3, 7),
        seed=99,
        reference=model,
        reference_X=X if match_with_reference_x else None,
    )
    assert challenger.persona_names == model.persona_names
    before, after = model.predict(X), challenger.predict(X)
    assert adjusted_rand(before, after) > 0.9
    assert (before == after).mean() > 0.95  # same ids, not merely the same partition
    if match_with_reference_x:
        assert challenger.metadata["match_method"] == "co_assignment"
        assert challenger.metadata["ari_vs_reference"] == pytest.approx(adjusted_rand(before, after))
    else:
        assert challenger.metadata["match_method"] == "centroid_distance"


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
    assert new_ids == {5}
    assert grown.persona_names[5] not in model.persona_names.values()

"""Persona naming: declared rules that score each segment's centroid profile.

A centroid is described by five *concepts*, each the mean robust z-score (centroid minus population
median, over the inter-quartile range, after log1p for skewed columns) of the features that express it:

| concept    | features (any present)                                            | sign          |
|------------|-------------------------------------------------------------------|---------------|
| recent     | recency_days, days_since_last_event                               | negated       |
| frequency  | frequency_*, orders_lifetime                                      | as is         |
| monetary   | monetary_*, avg_order_value_365d                                  | as is         |
| tenure     | tenure_days, signup_tenure_days                                   | as is         |
| engagement | visits_*, page_views_*, product_views_*, email_opens_*, email_clicks_* | as is    |

Each persona is a weighted sum of concepts (PERSONA_RULES). Names are unique: segments and personas are
paired by the assignment that maximises the total score; if there are more segments than personas, the
extra segments take their best persona's name with a suffix (`potential_2`). A concept with no feature
present counts as 0, so the rules degrade gracefully on other feature sets.
"""

from __future__ import annotations

import fnmatch

import numpy as np

CONCEPTS: dict[str, tuple[tuple[str, ...], float]] = {
    "recent": (("recency_days", "days_since_last_event"), -1.0),
    "frequency": (("frequency_*", "orders_lifetime"), 1.0),
    "monetary": (("monetary_*", "avg_order_value_*"), 1.0),
    "tenure": (("tenure_days", "signup_tenure_days"), 1.0),
    "engagement": (("visits_*", "page_views_*", "product_views_*", "email_opens_*", "email_clicks_*"), 1.0),
}

# persona -> concept weights. Read as: high_value_loyal = spends and buys much more than most, recently,
# for a long time; at_risk = valuable in the past but no longer recent; new = short tenure but recent;
# potential = recent and engaged without (yet) high value; hibernating = long gone, little value;
# regular = close to the population median on everything (penalised by distance from it).
PERSONA_RULES: dict[str, dict[str, float]] = {
    "high_value_loyal": {"monetary": 1.0, "frequency": 1.0, "recent": 0.5, "tenure": 0.25},
    "at_risk": {"monetary": 0.75, "frequency": 0.75, "recent": -1.0},
    "new": {"tenure": -1.0, "recent": 0.5, "frequency": -0.25},
    "potential": {"recent": 1.0, "engagement": 0.5, "monetary": -0.25, "frequency": -0.25},
    "hibernating": {"recent": -1.0, "frequency": -0.25, "monetary": -0.25, "engagement": -0.25},
}
REGULAR = "regular"


def concept_columns(features: list[str]) -> dict[str, list[int]]:
    """Positions in `features` of the columns expressing each concept."""
    out = {}
    for concept, (patterns, _) in CONCEPTS.items():
        out[concept] = [i for i, f in enumerate(features) if any(fnmatch.fnmatch(f, p) for p in patterns)]
    return out


def concept_scores(centroids_z: np.ndarray, features: list[str]) -> dict[str, np.ndarray]:
    """Per concept, one score per centroid: the signed mean z of its features (0 if none present)."""
    columns = concept_columns(features)
    scores = {}
    for concept, (_, sign) in CONCEPTS.items():
        idx = columns[concept]
        scores[concept] = sign * centroids_z[:, idx].mean(axis=1) if idx else np.zeros(len(centroids_z))
    return scores


def persona_score_matrix(centroids_z: np.ndarray, features: list[str]) -> tuple[list[str], np.ndarray]:
    """(persona names, matrix [segment, persona]) of rule scores; `regular` scores minus the mean |z|."""
    concepts = concept_scores(centroids_z, features)
    names = [*PERSONA_RULES, REGULAR]
    matrix = np.zeros((len(centroids_z), len(names)))
    for j, name in enumerate(PERSONA_RULES):
        for concept, weight in PERSONA_RULES[name].items():
            matrix[:, j] += weight * concepts[concept]
    matrix[:, -1] = -np.mean([np.abs(v) for v in concepts.values()], axis=0)
    return names, matrix


def name_segments(
    centroids_z: np.ndarray, features: list[str], *, taken: set[str] | None = None
) -> list[str]:
    """A unique persona name per centroid row, avoiding names in `taken` (already held by matched
    segments)."""
    from scipy.optimize import linear_sum_assignment

    taken = set(taken or ())
    names, matrix = persona_score_matrix(centroids_z, features)
    free = [j for j, n in enumerate(names) if n not in taken]
    result: list[str | None] = [None] * len(centroids_z)
    if free:
        rows, cols = linear_sum_assignment(matrix[:, free], maximize=True)
        for r, c in zip(rows, cols, strict=True):
            result[r] = names[free[c]]
    used = taken | {n for n in result if n}
    for r in range(len(result)):
        if result[r] is None:  # more segments than personas: best persona + a free suffix
            best = names[int(np.argmax(matrix[r]))]
            suffix = 2
            while f"{best}_{suffix}" in used:
                suffix += 1
            result[r] = f"{best}_{suffix}"
            used.add(result[r])
    return [str(n) for n in result]

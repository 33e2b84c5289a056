"""Persona naming: declared rules over each segment's RANKS against the population.

A segment is placed by its centre (models.segmentation passes each segment's median customer, per
feature, in the scaled space) on four concepts. Its rank on a concept is the share of the population
(the customers the model was fitted on) below the centre on that concept's features (mid-rank, in [0, 1],
averaged over the features present; `recent` is reversed so 1 = bought most recently):

| concept   | features (those present)                                  |
|-----------|-----------------------------------------------------------|
| recent    | recency_days (else days_since_last_event), reversed      |
| frequency | orders_lifetime, frequency_365d, frequency_90d, ...      |
| monetary  | monetary_lifetime, monetary_365d, monetary_90d, avg_order_value_365d |
| tenure    | tenure_days (else signup_tenure_days)                     |

A concept with no feature present ranks 0.5 (neutral). The first rule of `PERSONA_RULES` that holds
names the segment. Two guards keep names honest:
- a LAPSED name (at_risk, hibernating, lost) needs a recency rank below 0.4, and is never given to the
  segment that ranks first on recency among the segments: the most recent segment is never lapsed;
- names are unique: segments sharing a name get a qualifier from the concept that separates them most
  (`QUALIFIERS`, e.g. tenure -> `_loyal` / `_new`), repeated with the next concept while still equal.
  Never a number suffix;
- "new" is also absolute: a segment whose median customer has been with the business longer than
  `NEW_TENURE_DAYS` is never called new (by a rule or a qualifier), however it ranks. Ranks are relative,
  and in an old customer base the lowest-tenure segment may be two years old; a valuable one of those is
  `high_value_loyal`. Without tenure in original units (not passed, or no tenure feature) ranks decide.

Pure numpy; `rule_table()` gives the rules as text for reports and the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONCEPTS: dict[str, tuple[tuple[str, ...], bool]] = {
    # concept -> (features in order of preference, reversed?); a tuple entry "a|b" means "a, else b"
    "recent": (("recency_days|days_since_last_event",), True),
    "frequency": (("orders_lifetime", "frequency_365d", "frequency_90d", "frequency_30d"), False),
    "monetary": (
        ("monetary_lifetime", "monetary_365d", "monetary_90d", "monetary_30d", "avg_order_value_365d"),
        False,
    ),
    "tenure": (("tenure_days|signup_tenure_days",), False),
}
LAPSED = frozenset({"at_risk", "hibernating", "lost"})
PROSPECT = "prospect"  # not a cluster: customers without an order get it by rule (models.segmentation)
NEW_TENURE_DAYS = 180.0  # longer than this is not "new", whatever the rank (see module doc)

Ranks = dict[str, float]


@dataclass(frozen=True)
class Rule:
    name: str
    when: str  # the condition in words, for reports
    test: Callable[[Ranks], bool]


# First match wins. Ranks are shares of the population below the centroid (recent: 1 = most recent);
# `young` is 1.0 when the segment's median tenure is at most NEW_TENURE_DAYS (or unknown), else 0.0.
PERSONA_RULES: tuple[Rule, ...] = (
    Rule(
        "high_value_loyal",
        "recent >= 0.4, frequency >= 0.6, monetary >= 0.6, tenure >= 0.5 or older than NEW_TENURE_DAYS",
        lambda r: (
            r["recent"] >= 0.4
            and r["frequency"] >= 0.6
            and r["monetary"] >= 0.6
            and (r["tenure"] >= 0.5 or not _young(r))
        ),
    ),
    Rule(
        "high_value_new",
        "recent >= 0.4, frequency >= 0.6, monetary >= 0.6 (tenure < 0.25)",
        lambda r: r["recent"] >= 0.4 and r["frequency"] >= 0.6 and r["monetary"] >= 0.6,
    ),
    Rule(
        "at_risk",
        "recent < 0.4 and (frequency >= 0.5 or monetary >= 0.5): valuable, no longer buying",
        lambda r: r["recent"] < 0.4 and (r["frequency"] >= 0.5 or r["monetary"] >= 0.5),
    ),
    Rule(
        "new",
        "tenure < 0.2, recent >= 0.4, not older than NEW_TENURE_DAYS",
        lambda r: r["tenure"] < 0.2 and r["recent"] >= 0.4 and _young(r),
    ),
    Rule("potential", "recent >= 0.5 (recent, not yet valuable)", lambda r: r["recent"] >= 0.5),
    Rule("lost", "recent < 0.2 (and low value)", lambda r: r["recent"] < 0.2),
    Rule("hibernating", "recent < 0.4 (and low value)", lambda r: r["recent"] < 0.4),
    Rule("regular", "otherwise (around the middle)", lambda r: True),
)


def _young(r: Ranks) -> bool:
    return r.get("young", 1.0) >= 0.5


# concept -> (qualifier when the segment is the higher one, when it is the lower one)
QUALIFIERS: dict[str, tuple[str, str]] = {
    "tenure": ("loyal", "new"),
    "frequency": ("frequent", "occasional"),
    "monetary": ("big_spenders", "small_spenders"),
    "recent": ("active", "lapsing"),
}


def rule_table() -> list[tuple[str, str]]:
    """(persona, condition) in evaluation order."""
    return [(r.name, r.when) for r in PERSONA_RULES]


def _columns(features: list[str], spec: tuple[str, ...]) -> list[int]:
    out = []
    for entry in spec:
        for option in entry.split("|"):
            if option in features:
                out.append(features.index(option))
                break
    return out


def _mid_rank(population: np.ndarray, value: float) -> float:
    """Share of `population` below `value`, ties counting half."""
    if population.size == 0:
        return 0.5
    below = np.count_nonzero(population < value)
    equal = np.count_nonzero(population == value)
    return float((below + 0.5 * equal) / population.size)


def feature_ranks(
    centroids_z: np.ndarray, population_z: np.ndarray, features: list[str]
) -> list[dict[str, list[float]]]:
    """Per centroid row and concept, its rank on each of the concept's features present (oriented like
    the concept: for `recent`, 1 = most recent)."""
    out: list[dict[str, list[float]]] = [{} for _ in range(len(centroids_z))]
    for concept, (spec, reverse) in CONCEPTS.items():
        idx = _columns(features, spec)
        for row, c in enumerate(centroids_z):
            ranks = [_mid_rank(population_z[:, j], c[j]) for j in idx]
            out[row][concept] = [1.0 - r if reverse else r for r in ranks]
    return out


def concept_ranks(centroids_z: np.ndarray, population_z: np.ndarray, features: list[str]) -> list[Ranks]:
    """Per centroid row, its rank on each concept against the population (same scaled space; the
    scaling is monotone per feature, so ranks equal those in original units): the mean of its
    features' ranks, 0.5 when none is present."""
    return [
        {concept: float(np.mean(r)) if r else 0.5 for concept, r in row.items()}
        for row in feature_ranks(centroids_z, population_z, features)
    ]


def _agrees(per_feature: list[dict[str, list[float]]], concept: str, high: list[int], low: list[int]) -> bool:
    """Every feature of `concept` puts each `high` segment strictly above each `low` one: a qualifier
    ("frequent" / "occasional") that one of the concept's features contradicts or does not show is not
    given (the profile shows the features, and "frequent" with as many or fewer orders a year reads as
    a bug)."""
    if not high or not low:
        return True
    n = len(per_feature[high[0]][concept])
    return all(
        min(per_feature[i][concept][j] for i in high) > max(per_feature[i][concept][j] for i in low)
        for j in range(n)
    )


def base_name(ranks: Ranks, *, may_lapse: bool) -> str:
    """The first rule that holds (lapsed names skipped when `may_lapse` is False)."""
    for rule in PERSONA_RULES:
        if rule.name in LAPSED and not may_lapse:
            continue
        if rule.test(ranks):
            return rule.name
    return "regular"


def _qualify(
    names: list[str],
    ranks: list[Ranks],
    fixed: set[int],
    per_feature: list[dict[str, list[float]]] | None = None,
) -> list[str]:
    """Make names unique with concept qualifiers (see module doc); names of `fixed` rows never change.
    With `per_feature`, a concept whose features disagree on the order of the segments is not used."""
    names = list(names)
    used: dict[int, set[str]] = {i: set() for i in range(len(names))}
    for _ in range(len(QUALIFIERS) + 1):
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        clashes = [g for g in groups.values() if len(g) > 1 and any(i not in fixed for i in g)]
        if not clashes:
            return names
        for group in clashes:
            movable = [i for i in group if i not in fixed]
            options = [
                c
                for c in QUALIFIERS
                if not any(c in used[i] for i in movable)
                and not any(w in names[group[0]] for w in QUALIFIERS[c])
            ]
            if not options:
                break
            # tenure's low word is "new": not an option when a segment that would get it is not young
            t_mid = (max(ranks[i]["tenure"] for i in group) + min(ranks[i]["tenure"] for i in group)) / 2.0
            if any(ranks[i]["tenure"] < t_mid and not _young(ranks[i]) for i in movable):
                options = [c for c in options if c != "tenure"] or options
            if per_feature is not None:

                def split(c: str, group=group) -> tuple[list[int], list[int]]:
                    mid = (max(ranks[i][c] for i in group) + min(ranks[i][c] for i in group)) / 2.0
                    return [i for i in group if ranks[i][c] >= mid], [i for i in group if ranks[i][c] < mid]

                options = [c for c in options if _agrees(per_feature, c, *split(c))] or options
            spread = {c: max(ranks[i][c] for i in group) - min(ranks[i][c] for i in group) for c in options}
            concept = max(options, key=lambda c: spread[c])  # ties: QUALIFIERS order
            values = [ranks[i][concept] for i in group]
            mid = (max(values) + min(values)) / 2.0
            high, low = QUALIFIERS[concept]
            for i in movable:
                names[i] = f"{names[i]}_{high if ranks[i][concept] >= mid else low}"
                used[i].add(concept)
    # identical ranks on every concept (practically impossible for distinct centroids): order by recency
    order = sorted(range(len(names)), key=lambda i: -ranks[i]["recent"])
    seen: dict[str, int] = {}
    words = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
    for i in order:
        if names.count(names[i]) > 1 and i not in fixed:
            n = seen.get(names[i], 0)
            seen[names[i]] = n + 1
            names[i] = f"{names[i]}_{words[min(n, len(words) - 1)]}"
    return names


def name_segments(
    centroids_z: np.ndarray,
    features: list[str],
    *,
    population_z: np.ndarray,
    fixed: dict[int, str] | None = None,
    centroids_original: np.ndarray | None = None,
) -> list[str]:
    """A unique persona name per centroid row. `fixed` maps rows to names they keep (segments matched to
    the champion's); the other rows are named by the rules and qualified where names clash.
    `centroids_original` (same rows, original units) lets "new" be judged in days as well as by rank."""
    fixed = dict(fixed or {})
    per_feature = feature_ranks(centroids_z, population_z, features)
    ranks = [{c: float(np.mean(r)) if r else 0.5 for c, r in row.items()} for row in per_feature]
    tenure = _columns(features, CONCEPTS["tenure"][0])
    if centroids_original is not None and tenure:
        for row, r in enumerate(ranks):
            days = float(centroids_original[row, tenure[0]])
            r["young"] = 0.0 if np.isfinite(days) and days > NEW_TENURE_DAYS else 1.0
    top_recent = max(r["recent"] for r in ranks) if ranks else 0.0
    names = [fixed.get(row, base_name(r, may_lapse=r["recent"] < top_recent)) for row, r in enumerate(ranks)]
    return _qualify(names, ranks, set(fixed), per_feature)

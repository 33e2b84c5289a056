"""The one-customer tag engine's own parts: rounding without numpy arrays (bit for bit what the batch
engine's `np.round` gives, sign of zero included) and the evaluator compiled once per set of cut points."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from models.tag_engine import _round, _round_one, parse_catalog

EDGES = [
    0.0,
    -0.0,
    0.5,
    1.5,
    2.5,
    -0.5,
    -2.5,
    0.125,
    -0.125,
    2.675,
    1.005,
    0.285,
    -1e-7,  # rounds to -0.0 at a few decimals
    1e-7,
    5e-324,
    1.7976931348623157e308,  # overflows once scaled: inf, as numpy gives
    -1e308,
    2.0**53 + 1.0,
    4503599627370497.5,
    math.inf,
    -math.inf,
    math.nan,
]


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _values() -> list[float]:
    rng = random.Random(18)
    values = list(EDGES)
    for _ in range(5000):
        values.append(rng.uniform(-1e4, 1e4))
        values.append(round(rng.uniform(-100, 100), rng.randint(0, 8)) + 5 * 10.0 ** -rng.randint(1, 9))
        values.append(rng.randint(-(10**6), 10**6) / 2 ** rng.randint(0, 12))  # exact binary ties
        values.append(rng.uniform(-1, 1) * 10.0 ** rng.randint(-20, 30))
    return values


@pytest.mark.parametrize("decimals", [-2, -1, 0, 1, 2, 3, 6, 10])
def test_round_one_is_the_batch_rounding_bit_for_bit(decimals: int) -> None:
    values = _values()
    batch = _round(np.asarray(values, dtype=np.float64), decimals).tolist()
    wrong = [
        (v, got, want)
        for v, want in zip(values, batch, strict=True)
        if not _same(got := _round_one(v, decimals), want)
    ]
    assert not wrong, wrong[:5]


def _tag(key: str, expr: str, **extra: object) -> dict[str, object]:
    return {
        "key": key,
        "description": key,
        "kind": "rule",
        "type": "number",
        "cadence": "daily",
        "owner": "t",
        "version": 1,
        "crm_field": f"f_{key}",
        "expr": expr,
        **extra,
    }


CATALOG = parse_catalog(
    {
        "version": "t1",
        "cutpoints": {"r": {"feature": "recency_days", "bins": 4}},
        "tags": [
            _tag("r_score", "5 - qcut(recency_days, 'r')"),
            _tag("per_day", "monetary_365d / (recency_days + 1)", decimals=2),
        ],
    },
    known_names={"recency_days", "monetary_365d"},
    string_names=set(),
)


def _cuts(edges: list[float]) -> dict[str, object]:
    return {"cutpoints": {"r": {"feature": "recency_days", "bins": 4, "population": None, "edges": edges}}}


def test_one_customer_evaluator_is_compiled_per_cutpoints_object() -> None:
    row = {"recency_days": 20.0, "monetary_365d": 10.0}
    low, high = _cuts([1.0, 2.0, 3.0]), _cuts([100.0, 200.0, 300.0])
    assert CATALOG.one_customer(low) is CATALOG.one_customer(low)  # compiled once
    assert CATALOG.evaluate_one(row, low)["r_score"] == 1.0  # 20 is above every edge: score 4
    assert CATALOG.evaluate_one(row, high)["r_score"] == 4.0  # other cut points, other answer
    assert CATALOG.evaluate_one(row, _cuts([1.0, 2.0, 3.0]))["r_score"] == 1.0  # an equal, new object
    assert CATALOG.evaluate_one(row, low)["per_day"] == 0.48  # 10 / 21 rounded to 2 decimals
    assert math.isnan(CATALOG.evaluate_one({"recency_days": None, "monetary_365d": 1.0}, low)["r_score"])

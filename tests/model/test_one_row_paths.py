"""The models' one-row paths (the one customer a CRM usually asks for) against the array code they stand
in for: the value model's history (`_history_of_one`, plain floats) bit for bit (sign of zero included)
on every combination of awkward values (missing, zero of either sign, infinities, the largest and
smallest floats), and a segment from a 1-row request equal to the same row's inside a many-row one."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from models.clv import history_from_columns
from models.segmentation import PROSPECT_ID, buyer_mask, fit_segmentation

SPECIAL = [
    math.nan,
    -math.inf,
    -1.7976931348623157e308,
    -3.0,
    -0.0,
    0.0,
    5e-324,
    0.5,
    1.0,
    2.0,
    7.25,
    400.0,
    1.7976931348623157e308,
    math.inf,
]
NAMES = ("orders_lifetime", "tenure_days", "recency_days", "monetary_lifetime")


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def test_one_row_history_is_the_array_history_bit_for_bit() -> None:
    rows = list(itertools.product(SPECIAL, repeat=4))
    columns = {name: np.array([r[j] for r in rows]) for j, name in enumerate(NAMES)}
    with np.errstate(over="ignore", invalid="ignore"):  # the largest floats overflow, as they may
        many = history_from_columns(columns)  # the array path (more than one row)
    wrong = []
    for i, row in enumerate(rows):
        one = history_from_columns({name: np.array([v]) for name, v in zip(NAMES, row, strict=True)})
        for field in ("x", "t_x", "T", "m"):
            got, want = getattr(one, field), getattr(many, field)[i]
            assert got.shape == (1,) and got.dtype == np.float64
            if not _same(float(got[0]), float(want)):
                wrong.append((row, field, float(got[0]), float(want)))
    assert not wrong, wrong[:5]


def test_one_row_history_reads_integer_and_missing_columns() -> None:
    one = history_from_columns(
        {
            "orders_lifetime": np.array([3]),  # integers, as a frame may hold them
            "tenure_days": np.array([100]),
            "recency_days": np.array([np.nan]),  # unknown: the last purchase counts as at T
            "monetary_lifetime": np.array([90.0]),
        }
    )
    assert (one.x[0], one.t_x[0], one.T[0], one.m[0]) == (2.0, 100.0, 100.0, 30.0)


SEGMENT_FEATURES = ["recency_days", "orders_lifetime", "monetary_365d", "tenure_days"]


@pytest.fixture(scope="module")
def segments():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(18)
    n = 600
    columns = {
        "recency_days": rng.uniform(0, 400, n),
        "orders_lifetime": rng.integers(1, 30, n).astype(np.float64),
        "monetary_365d": rng.lognormal(5, 1, n),
        "tenure_days": rng.uniform(10, 1000, n),
    }
    model = fit_segmentation(X=pd.DataFrame(columns), features=SEGMENT_FEATURES, k=4, k_range=(3, 5), seed=3)
    # rows to score: ordinary, missing values, no order (a prospect), an integer column, NaN orders
    score = {name: values[:60].copy() for name, values in columns.items()}
    score["recency_days"][::9] = np.nan
    score["monetary_365d"][1::7] = np.nan
    score["orders_lifetime"][2::11] = 0.0
    score["orders_lifetime"][5::13] = np.nan
    score["tenure_days"] = np.round(score["tenure_days"]).astype(np.int64)
    return model, score


def test_a_segment_of_one_row_is_the_rows_segment_inside_many(segments) -> None:  # type: ignore[no-untyped-def]
    model, columns = segments
    many = model.predict_columns(columns)
    assert (many == PROSPECT_ID).any() and len(set(many.tolist())) > 2  # both kinds of answer present
    one = [model.predict_columns({k: v[i : i + 1] for k, v in columns.items()}) for i in range(len(many))]
    assert all(o.shape == (1,) and o.dtype == many.dtype for o in one)
    assert [int(o[0]) for o in one] == many.tolist()


@pytest.mark.parametrize(
    "row",
    [[5.0, 2.0], [np.nan, 2.0], [5.0, 0.0], [5.0, np.nan], [np.nan, np.nan], [0.0, -1.0], [5.0, np.inf]],
)
@pytest.mark.parametrize(
    "features", [["recency_days", "orders_lifetime"], ["orders_lifetime", "recency_days"]]
)
def test_buyer_mask_of_one_row_is_the_array_mask(row: list[float], features: list[str]) -> None:
    x = np.array([row if features[0] == "recency_days" else row[::-1]])
    many = buyer_mask(np.vstack([x, x]), features)  # the array path
    one = buyer_mask(x, features)
    assert one.dtype == bool and one.tolist() == many[:1].tolist()
    assert buyer_mask(x, ["monetary_365d", "tenure_days"]).tolist() == [True]  # neither feature: a buyer


def test_an_encoded_row_is_the_rows_encoding_inside_many() -> None:
    from models.classifier import MISSING_CATEGORY, encode_columns

    columns = {
        "recency_days": np.array([4.5, np.nan, -0.0, np.inf, 1e308, 7.0]),
        "orders_lifetime": np.array([3, 0, 1, 2, 9, 4], dtype=np.int64),
        "is_open_lead": np.array([True, False, True, False, True, False]),
        "channel": np.array(["web", None, "fax", np.nan, "store", "web"], dtype=object),  # fax: unseen
        "region": np.array(["n", "s", None, "n", "s", "e"], dtype=object),
        "count_as_text": np.array(["1", "2.5", None, "3", "0", "4"], dtype=object),  # numbers as text
    }
    categories = {"channel": ["store", "web"], "region": ["n", "s", MISSING_CATEGORY]}
    names = list(columns)
    many = encode_columns(columns, features=names, categories=categories, where="test")
    assert np.isnan(many).any() and (many == 1.0).any()  # missing and known codes are both there
    for i in range(len(many)):
        one = encode_columns(
            {k: v[i : i + 1] for k, v in columns.items()}, features=names, categories=categories, where="test"
        )
        assert one.shape == (1, len(names)) and one.dtype == np.float64
        assert one.tobytes() == many[i : i + 1].tobytes(), i  # bit for bit, NaN and the sign of zero included

"""models.metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ValidationFailed
from models.metrics import binary_metrics, top_decile_lift


def test_binary_metrics_match_hand_computed_values():
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    m = binary_metrics(y, p)
    # Pairs (pos, neg): (0.35,0.1) ok, (0.35,0.4) wrong, (0.8,*) ok -> 3/4.
    assert m["roc_auc"] == pytest.approx(0.75)
    # Ranked: 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 0.5 * 1 + 0.5 * 2/3.
    assert m["pr_auc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    expected_ll = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_ll)
    # Top decile of 4 rows = 1 row (0.8, a positive): lift = 1 / 0.5, capture = 1 of 2 positives.
    assert m["lift_top_decile"] == pytest.approx(2.0)
    assert m["capture_top_decile"] == pytest.approx(0.5)
    assert m["positive_rate"] == pytest.approx(0.5)
    assert m["n"] == 4


def test_top_decile_on_twenty_rows():
    y = np.array([1, 0] + [0] * 14 + [1, 1, 0, 0])
    p = np.linspace(1.0, 0.05, 20)  # row order is the ranking
    lift, capture = top_decile_lift(y, p)
    # Top 2 rows hold 1 positive; 3 positives of 20 overall.
    assert lift == pytest.approx((1 / 2) / (3 / 20))
    assert capture == pytest.approx(1 / 3)


def test_log_loss_stays_finite_on_hard_zero_one_predictions():
    m = binary_metrics([0, 1], [1.0, 0.0])
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 30


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1, 1], [0.2, 0.3, 0.4], "only class 1"),
        ([0, 2, 1], [0.2, 0.3, 0.4], "row 1 holds 2"),
        ([0, 1, 1], [0.2, 1.3, 0.4], "row 1 holds 1.3"),
        ([0, 1], [0.2, 0.3, 0.4], "2 values but proba has 3"),
    ],
)
def test_bad_inputs_are_named(y, p, message):
    with pytest.raises(ValidationFailed, match=message):
        binary_metrics(y, p)

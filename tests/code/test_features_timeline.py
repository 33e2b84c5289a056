"""`features.timeline`: sorted-key window queries, checked against hand-counted tiny timelines."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ValidationFailed
from features.timeline import Probe, Timeline, pick

S = 1_700_006_400  # a midnight in epoch seconds (2023-11-15)
US = 1_000_000
DAY = 86_400


def test_strictly_before_to_the_microsecond():
    # customer 0: one row 1 microsecond before S, one exactly at S
    tl = Timeline(np.array([0, 0]), np.array([S * US - 1, S * US]), n_codes=1)
    assert tl.count(np.array([0]), S - DAY, S).tolist() == [1]
    assert tl.count(np.array([0]), S - DAY, S + 1).tolist() == [2]
    # the lower bound is inclusive: a row exactly at S - 1 day is inside [S - 1d, S)
    tl = Timeline(np.array([0]), np.array([(S - DAY) * US]), n_codes=1)
    assert tl.count(np.array([0]), S - DAY, S).tolist() == [1]


def test_counts_sums_and_last_per_customer():
    # rows (code, days before S, value): c0: 5d=10, 40d=20, 100d=30 ; c1: 1d=7 ; c2: none
    codes = np.array([1, 0, 0, 0])
    ts = np.array([S - 1 * DAY, S - 100 * DAY, S - 5 * DAY, S - 40 * DAY]) * US
    values = np.array([7.0, 30.0, 10.0, 20.0])
    tl = Timeline(codes, ts, n_codes=3)
    q = np.array([0, 1, 2, 0])
    snaps = np.array([S, S, S, S - 30 * DAY])  # the last query is 30 days earlier for c0
    at = Probe(tl, q, snaps)
    running = tl.running_sum(values)
    assert at.count(30).tolist() == [1, 1, 0, 1]  # c0@S: 5d ; c1: 1d ; c0@S-30: 40d (10 days before it)
    assert at.count(90).tolist() == [2, 1, 0, 2]  # c0@S-30 sees 40d and 100d (10 and 70 days back)
    assert at.count(None).tolist() == [3, 1, 0, 2]
    assert at.total(running, 90).tolist() == [30.0, 7.0, 0.0, 50.0]
    # [s - 180d, s - 30d): c0@S holds 40d + 100d; c0@S-30 holds only 100d (70 days before S-30;
    # 40d is 10 days before S-30: too recent)
    assert at.total(running, 180, 30).tolist() == [50.0, 0.0, 0.0, 30.0]
    last = pick(tl.ts_us, at.last())
    assert last[0] == (S - 5 * DAY) * US and last[1] == (S - DAY) * US and np.isnan(last[2])
    assert last[3] == (S - 40 * DAY) * US


def test_running_sums_ignore_other_customers_and_later_rows():
    ts = np.array([S - 3 * DAY, S - 2 * DAY]) * US
    base = Timeline(np.array([1, 1]), ts, n_codes=2)
    base_total = Probe(base, np.array([1]), np.array([S])).total(base.running_sum(np.array([0.1, 0.2])), 30)
    # add rows for customer 0 (sorted before customer 1) and a later row for customer 1
    more = Timeline(np.array([0, 1, 1, 1]), np.array([S - 4 * DAY, *(ts // US), S + DAY]) * US, n_codes=2)
    more_total = Probe(more, np.array([1]), np.array([S])).total(
        more.running_sum(np.array([1e9 + 0.3, 0.1, 0.2, 5.0])), 30
    )
    assert base_total.tolist() == more_total.tolist()  # exactly, not approximately


def test_tiebreak_orders_rows_at_one_instant():
    tl = Timeline(np.array([0, 0]), np.array([S * US, S * US]), n_codes=1, tiebreak=np.array(["l9", "l2"]))
    assert tl.order.tolist() == [1, 0]  # "l2" then "l9": the greater id is the latest
    assert tl.last_before(np.array([0]), S + 1).tolist() == [1]


def test_empty_timeline_and_bounds_outside_the_data():
    tl = Timeline(np.array([], dtype="int64"), np.array([], dtype="int64"), n_codes=2)
    at = Probe(tl, np.array([0, 1]), np.array([S, S]))
    assert at.count(365).tolist() == [0, 0]
    assert at.total(tl.running_sum(np.array([])), None).tolist() == [0.0, 0.0]
    assert np.isnan(pick(tl.ts_us, at.last())).all()
    one = Timeline(np.array([0]), np.array([S * US]), n_codes=1)
    assert one.count(np.array([0]), -(10**12), 10**12).tolist() == [1]  # far bounds are clamped


def test_impossible_time_span_is_refused():
    with pytest.raises(ValidationFailed, match="orders: timestamps span .* too wide"):
        Timeline(np.array([0, 1]), np.array([0, 2**62]), n_codes=10**7, what="orders")

"""Property: features at a snapshot depend only on rows strictly before it (point-in-time correctness).

Adding any orders, events or leads stamped at or after a snapshot S (including exactly S, and for
customers both known and unknown) changes no value in any feature table at S.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import compute_feature_tables
from features.vocabulary import EVENT_TYPES

T0 = pd.Timestamp("2023-06-01", tz="UTC")
SPAN_MINUTES = 600 * 24 * 60  # rows fall in about 20 months from T0
IDS = ["A", "B", "C", "D"]
STATUSES = ["completed", "completed", "returned", "cancelled"]
TS = "datetime64[us, UTC]"


def _at(minutes: list[int]) -> pd.Series:
    return pd.Series(pd.to_datetime([T0 + timedelta(minutes=m) for m in minutes], utc=True)).astype(TS)


minute = st.integers(0, SPAN_MINUTES)
order_row = st.tuples(
    st.sampled_from([*IDS, "X"]),
    minute,
    st.integers(0, 300),
    st.integers(0, 30),
    st.sampled_from(["toys", "books", None]),
    st.sampled_from(STATUSES),
)
event_row = st.tuples(st.sampled_from([*IDS, "X"]), minute, st.sampled_from(EVENT_TYPES))
lead_row = st.tuples(
    st.sampled_from([*IDS, "X"]),
    minute,
    st.sampled_from(["web", "fair"]),
    st.integers(0, 100),
    st.one_of(st.none(), minute),
)


def _orders(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(rows))],
            "customer_id": pd.Series([r[0] for r in rows], dtype=object),
            "order_ts": _at([r[1] for r in rows]),
            "amount": pd.Series([float(r[2]) for r in rows], dtype=float),
            "discount": pd.Series([float(r[3]) for r in rows], dtype=float),
            "quantity": 1,
            "category": pd.Series([r[4] for r in rows], dtype=object),
            "is_returned": pd.Series([r[5] == "returned" for r in rows], dtype=bool),
            "is_cancelled": pd.Series([r[5] == "cancelled" for r in rows], dtype=bool),
        }
    )


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype=object),
            "event_ts": _at([r[1] for r in rows]),
            "event_type": pd.Series([r[2] for r in rows], dtype=object),
            "channel": "web",
        }
    )


def _leads(rows, *, prefix: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"{prefix}{i}" for i in range(len(rows))],
            "customer_id": pd.Series([r[0] for r in rows], dtype=object),
            "created_ts": _at([r[1] for r in rows]),
            "source": pd.Series([r[2] for r in rows], dtype=object),
            "campaign": "c",
            "engagement_score": pd.Series([float(r[3]) for r in rows], dtype=float),
            "converted_ts": pd.Series(
                pd.to_datetime(
                    [pd.NaT if r[4] is None else T0 + timedelta(minutes=r[4]) for r in rows], utc=True
                )
            ).astype(TS),
        }
    )


@st.composite
def scenario(draw):
    snap_days = draw(st.lists(st.integers(1, 600), min_size=1, max_size=3, unique=True))
    snapshot = T0 + timedelta(days=draw(st.sampled_from(snap_days)))
    snapshot_minute = int((snapshot - T0) / timedelta(minutes=1))
    # rows stamped at or after the chosen snapshot; half of the draws land exactly on it
    later = st.one_of(st.just(snapshot_minute), st.integers(snapshot_minute, snapshot_minute + 400 * 24 * 60))
    customers = pd.DataFrame(
        {
            "customer_id": IDS,
            "consent_profiling": draw(st.lists(st.booleans(), min_size=4, max_size=4)),
            "signup_ts": _at([draw(st.integers(-200 * 24 * 60, SPAN_MINUTES)) for _ in IDS]),
            "first_seen_ts": _at([draw(st.integers(-100 * 24 * 60, SPAN_MINUTES)) for _ in IDS]),
            "region": ["n", "s", None, "e"],
            "customer_type": "b2c",
            "acquisition_channel": "web",
            "sources": [["contacts"]] * 4,
        }
    )
    if draw(st.booleans()):  # also cover a customers table without first_seen_ts (derived)
        customers = customers.drop(columns="first_seen_ts")

    base = {
        "orders": draw(st.lists(order_row, max_size=12)),
        "events": draw(st.lists(event_row, max_size=12)),
        "leads": draw(st.lists(lead_row, max_size=4)),
    }
    extra = {
        "orders": [(*r[:1], draw(later), *r[2:]) for r in draw(st.lists(order_row, min_size=0, max_size=6))],
        "events": [(*r[:1], draw(later), *r[2:]) for r in draw(st.lists(event_row, max_size=6))],
        "leads": [(*r[:1], draw(later), *r[2:]) for r in draw(st.lists(lead_row, max_size=3))],
    }
    snapshots = [T0 + timedelta(days=d) for d in snap_days]
    return customers, base, extra, snapshots, snapshot


def _tables(customers, rows, snapshots, *, extra_leads=()):
    return compute_feature_tables(
        customers=customers,
        orders=_orders(rows["orders"]),
        events=_events(rows["events"]),
        leads=pd.concat(
            [_leads(rows["leads"], prefix="b"), _leads(list(extra_leads), prefix="x")], ignore_index=True
        ),
        snapshots=snapshots,
        created=pd.Timestamp("2030-01-01", tz="UTC"),
    ).tables


@pytest.mark.slow  # 60 examples x 2 builds of every table: 15-40 s on 2 shared cores
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_rows_at_or_after_a_snapshot_change_nothing_at_it(case):
    customers, base, extra, snapshots, snapshot = case
    before = _tables(customers, base, snapshots)
    combined = {
        "orders": base["orders"] + extra["orders"],
        "events": base["events"] + extra["events"],
        "leads": base["leads"],
    }
    after = _tables(customers, combined, snapshots, extra_leads=extra["leads"])
    assert (
        set(before)
        == set(after)
        == {"customer_transactions", "customer_engagement", "customer_leads", "customer_profile"}
    )
    for name in before:
        at_before = before[name][before[name]["event_timestamp"] == snapshot].reset_index(drop=True)
        at_after = after[name][after[name]["event_timestamp"] == snapshot].reset_index(drop=True)
        pd.testing.assert_frame_equal(at_before, at_after, check_exact=True, obj=name)


def test_an_order_exactly_at_the_snapshot_is_not_seen():
    snapshot = T0 + timedelta(days=100)
    customers = pd.DataFrame(
        {"customer_id": ["A"], "consent_profiling": [True], "signup_ts": _at([0]), "first_seen_ts": _at([0])}
    )
    at_snapshot = [("A", 100 * 24 * 60, 50, 0, "toys", "completed")]
    one_minute_before = [("A", 100 * 24 * 60 - 1, 50, 0, "toys", "completed")]
    empty_leads = pd.DataFrame(
        columns=["lead_id", "customer_id", "created_ts", "source", "engagement_score", "converted_ts"]
    )

    def frequency(rows):
        tables = compute_feature_tables(
            customers=customers,
            orders=_orders(rows),
            events=None,
            leads=empty_leads,
            snapshots=[snapshot],
            created=snapshot,
        )
        return tables.tables["customer_transactions"].loc[0, "frequency_30d"]

    assert frequency(at_snapshot) == 0
    assert frequency(one_minute_before) == 1

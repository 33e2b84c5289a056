"""Order features on tiny hand-checked data (features/transactions.py).

The helpers at the top build clean tables of the contract's shape; other features tests import them.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.build import compute_feature_tables

TS = "datetime64[us, UTC]"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _stamps(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601")).astype(TS)


def customers_frame(rows: list[dict]) -> pd.DataFrame:
    """Clean `customers`: each row gives customer_id and optionally any other column."""
    defaults = {
        "consent_profiling": True,
        "signup_ts": None,
        "first_seen_ts": "2020-01-01",
        "region": "north",
        "city": "x",
        "acquisition_channel": "web",
        "customer_type": "b2c",
        "is_customer": True,
        "sources": ["contacts", "orders"],
    }
    full = [{**defaults, **row} for row in rows]
    frame = pd.DataFrame(full)
    frame["signup_ts"] = _stamps(frame["signup_ts"].tolist())
    frame["first_seen_ts"] = _stamps(frame["first_seen_ts"].tolist())
    frame["consent_profiling"] = frame["consent_profiling"].astype(bool)
    return frame


def orders_frame(rows: list[tuple]) -> pd.DataFrame:
    """Clean `orders` from (customer_id, order_ts, amount, discount, category, status) tuples."""
    columns = ["customer_id", "order_ts", "amount", "discount", "category", "status"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        frame = frame.astype({"amount": float, "discount": float})
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(frame))],
            "customer_id": frame["customer_id"].astype(object),
            "order_ts": _stamps(frame["order_ts"].tolist()),
            "amount": frame["amount"].astype(float),
            "discount": frame["discount"].astype(float),
            "quantity": 1,
            "category": frame["category"].astype(object),
            "is_returned": frame["status"].eq("returned").astype(bool),
            "is_cancelled": frame["status"].eq("cancelled").astype(bool),
        }
    )


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    """Clean `events` from (customer_id, event_ts, event_type) tuples."""
    frame = pd.DataFrame(rows, columns=["customer_id", "event_ts", "event_type"])
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(object),
            "event_ts": _stamps(frame["event_ts"].tolist()),
            "event_type": frame["event_type"].astype(object),
            "channel": "web",
        }
    )


def leads_frame(rows: list[tuple]) -> pd.DataFrame:
    """Clean `leads` from (lead_id, customer_id, created_ts, source, engagement_score, converted_ts)."""
    frame = pd.DataFrame(
        rows, columns=["lead_id", "customer_id", "created_ts", "source", "engagement_score", "converted_ts"]
    )
    return pd.DataFrame(
        {
            "lead_id": frame["lead_id"].astype(object),
            "customer_id": frame["customer_id"].astype(object),
            "created_ts": _stamps(frame["created_ts"].tolist()),
            "source": frame["source"].astype(object),
            "campaign": "spring",
            "engagement_score": frame["engagement_score"].astype(float),
            "converted_ts": _stamps(frame["converted_ts"].tolist()),
        }
    )


def build(customers, orders, events=None, leads=None, snapshots=("2024-07-01",), windows=(30, 90, 365)):
    return compute_feature_tables(
        customers=customers,
        orders=orders,
        events=events,
        leads=leads,
        snapshots=[ts(s) for s in snapshots],
        windows_days=list(windows),
        created=ts("2024-12-31 12:00"),
    )


def row(table: pd.DataFrame, customer_id: str, snapshot: str = "2024-07-01") -> pd.Series:
    hit = table[(table["customer_id"] == customer_id) & (table["event_timestamp"] == ts(snapshot))]
    assert len(hit) == 1, f"expected one row for {customer_id} at {snapshot}, got {len(hit)}"
    return hit.iloc[0]


# Snapshot 2024-07-01. Customer A (signup 2024-01-01):
#   o0 2024-06-21 amount 100 disc 0  cat toys   completed   (10 days before)
#   o1 2024-05-02 amount  60 disc 20 cat books  returned    (60 days before)
#   o2 2024-03-03 amount  40 disc 0  cat toys   completed   (120 days before: previous 90-day period)
#   o3 2024-06-30 amount 500 disc 0  cat garden cancelled   (1 day before, ignored everywhere)
#   o4 2023-01-01 amount  30 disc 10 cat food   completed   (547 days before: lifetime only)
#   o5 2024-07-01 amount 999 disc 0  cat toys   completed   (AT the snapshot: not seen)
# Customer B: no orders, signup 2024-06-01. Customer C: one order 2024-06-01 (30 days before exactly).
ORDERS = [
    ("A", "2024-06-21", 100.0, 0.0, "toys", "completed"),
    ("A", "2024-05-02", 60.0, 20.0, "books", "returned"),
    ("A", "2024-03-03", 40.0, 0.0, "toys", "completed"),
    ("A", "2024-06-30", 500.0, 0.0, "garden", "cancelled"),
    ("A", "2023-01-01", 30.0, 10.0, "food", "completed"),
    ("A", "2024-07-01", 999.0, 0.0, "toys", "completed"),
    ("C", "2024-06-01", 25.0, 5.0, None, "completed"),
]


@pytest.fixture
def transactions() -> pd.DataFrame:
    customers = customers_frame(
        [
            {"customer_id": "A", "signup_ts": "2024-01-01"},
            {"customer_id": "B", "signup_ts": "2024-06-01"},
            {"customer_id": "C", "signup_ts": None},
        ]
    )
    return build(customers, orders_frame(ORDERS)).tables["customer_transactions"]


def test_recency_frequency_monetary_of_a_customer(transactions):
    a = row(transactions, "A")
    assert a["recency_days"] == 10.0  # o0 on 06-21; the cancelled o3 and o5 at the snapshot don't count
    assert (a["frequency_30d"], a["frequency_90d"], a["frequency_365d"]) == (1, 2, 3)  # o0 | o0,o1 | +o2
    # kept (not returned, not cancelled): o0 in 30d; o0 in 90d (o1 returned); o0+o2 in 365d
    assert (a["monetary_30d"], a["monetary_90d"], a["monetary_365d"]) == (100.0, 100.0, 140.0)
    assert a["avg_order_value_365d"] == 70.0  # 140 over 2 kept orders
    assert a["orders_lifetime"] == 4  # o0, o1, o2, o4
    assert a["monetary_lifetime"] == 170.0  # 100 + 40 + 30


def test_rates_breadth_trend_and_tenure(transactions):
    a = row(transactions, "A")
    assert a["return_rate_365d"] == pytest.approx(1 / 3)  # o1 returned of o0, o1, o2
    # discounts 0 + 20 + 0 over gross (100 + 80 + 40)
    assert a["discount_rate_365d"] == pytest.approx(20 / 220)
    assert a["category_breadth_365d"] == 2  # toys, books (garden was cancelled, food is older)
    assert a["frequency_trend_90d"] == 2.0  # 2 purchases in the last 90 days over 1 (o2) before
    assert a["monetary_trend_90d"] == 2.5  # kept amount 100 over 40
    assert a["tenure_days"] == 547.0  # first purchase 2023-01-01 is older than the signup


def test_customer_without_orders_has_zero_counts_and_undefined_rates(transactions):
    b = row(transactions, "B")
    assert b[["frequency_30d", "frequency_90d", "frequency_365d", "orders_lifetime"]].tolist() == [0, 0, 0, 0]
    assert b[["monetary_30d", "monetary_365d", "monetary_lifetime"]].tolist() == [0.0, 0.0, 0.0]
    assert b["category_breadth_365d"] == 0
    for name in (
        "recency_days",
        "avg_order_value_365d",
        "return_rate_365d",
        "discount_rate_365d",
        "frequency_trend_90d",
        "monetary_trend_90d",
    ):
        assert math.isnan(b[name]), name
    assert b["tenure_days"] == 30.0  # signup 2024-06-01, no purchase


def test_window_edges_and_missing_category(transactions):
    c = row(transactions, "C")
    # 2024-06-01 is exactly 30 days before: inside the 30-day window (s - 30d <= ts < s)
    assert c["frequency_30d"] == 1 and c["monetary_30d"] == 25.0
    assert c["category_breadth_365d"] == 0  # a null category is not a category
    assert c["tenure_days"] == 30.0  # no signup: days since the first purchase
    assert math.isnan(c["frequency_trend_90d"])  # nothing in the previous 90 days: undefined


def test_an_extra_window_adds_its_own_columns():
    customers = customers_frame([{"customer_id": "A"}])
    table = build(customers, orders_frame(ORDERS), windows=(7, 30, 90, 365)).tables["customer_transactions"]
    a = row(table, "A")
    # 7 days back from 07-01 holds only the cancelled o3 (o0 is 10 days old): no purchase
    assert a["frequency_7d"] == 0 and a["monetary_7d"] == 0.0
    assert a["frequency_30d"] == 1
    assert list(table.columns[3:7]) == ["recency_days", "frequency_7d", "frequency_30d", "frequency_90d"]

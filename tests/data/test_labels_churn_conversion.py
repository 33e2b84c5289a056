"""Labels on hand-built clean tables; every expected value is worked out by hand in the comments."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import ValidationFailed
from training.labels import churn_labels, conversion_labels, segmentation_entities


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


T1, T2, T3 = ts("2025-01-01"), ts("2025-04-01"), ts("2025-07-01")


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "consent_profiling": [True, True, False, None]})


@pytest.fixture
def orders() -> pd.DataFrame:
    rows = [
        # customer, ts, returned, cancelled
        ("A", "2024-12-01", False, False),
        ("A", "2025-02-01", False, False),
        ("A", "2025-07-15", False, False),  # the last order: data end
        ("B", "2024-06-01", False, False),
        ("B", "2025-03-31", False, True),  # cancelled: not a purchase
        ("B", "2025-04-01", False, False),  # exactly at T2: inside [T2, T2+90d), outside T1's window end
        ("C", "2024-12-15", False, False),  # withdrew consent: never labelled
        ("D", "2023-12-01", False, False),  # more than 365 days before T1
        ("D", "2025-01-10", True, False),  # returned: not a purchase
        ("D", "2025-03-01", False, False),
        ("D", "2025-06-29", False, False),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_ts", "is_returned", "is_cancelled"])
    frame["order_ts"] = pd.to_datetime(frame["order_ts"], utc=True).astype("datetime64[us, UTC]")
    return frame


def as_set(frame: pd.DataFrame) -> set[tuple[str, str, int]]:
    return {(r.customer_id, str(r.event_timestamp.date()), int(r.label)) for r in frame.itertuples()}


def test_churn_labels_hand_computed(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    out = churn_labels(orders=orders, customers=customers, snapshots=[T1, T2, T3], horizon_days=90)
    # T3 + 90d = 2025-09-29 > data end 2025-07-15: not labelled.
    # T1: A active (2024-12-01), buys 2025-02-01 -> 0; B active (2024-06-01), only a cancelled order and
    #     the 2025-04-01 order falls at the window's open end -> 1; D's last purchase is older than 365 days.
    # T2: A's next purchase 2025-07-15 is after 2025-06-30 -> 1; B buys at exactly T2 -> 0; D active
    #     (2025-03-01) and buys 2025-06-29 -> 0.
    assert as_set(out) == {
        ("A", "2025-01-01", 0),
        ("B", "2025-01-01", 1),
        ("A", "2025-04-01", 1),
        ("B", "2025-04-01", 0),
        ("D", "2025-04-01", 0),
    }
    assert list(out.columns) == ["customer_id", "event_timestamp", "label"]
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_churn_labels_never_look_past_data_end(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    out = churn_labels(
        orders=orders, customers=customers, snapshots=[T1, T2], horizon_days=90, data_end=ts("2025-06-01")
    )
    # T2 + 90d = 2025-06-30 is after the given end: only T1 is labelled.
    assert set(out["event_timestamp"].dt.date.astype(str)) == {"2025-01-01"}


def test_churn_without_customers_table_keeps_everyone(orders: pd.DataFrame) -> None:
    out = churn_labels(orders=orders, customers=None, snapshots=[T1], horizon_days=90)
    # C (2024-12-15) is active at T1 and buys nothing after -> 1.
    assert ("C", "2025-01-01", 1) in as_set(out)


@pytest.fixture
def leads() -> pd.DataFrame:
    rows = [
        ("L1", "X", "2024-12-01", "2025-01-20"),
        ("L2", "Y", "2024-11-01", None),
        ("L3", "Z", "2025-01-15", "2025-05-15"),
        ("L4", "W", "2024-10-01", "2025-01-05"),  # W withdrew consent
        ("L5", "Y", "2025-02-01", "2025-03-01"),  # converts exactly at the snapshot
    ]
    frame = pd.DataFrame(rows, columns=["lead_id", "customer_id", "created_ts", "converted_ts"])
    for col in ("created_ts", "converted_ts"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame


def test_conversion_labels_hand_computed(leads: pd.DataFrame) -> None:
    customers = pd.DataFrame(
        {"customer_id": ["X", "Y", "Z", "W"], "consent_profiling": [True, True, True, False]}
    )
    s1, s2, s3 = ts("2025-01-01"), ts("2025-03-01"), ts("2025-04-01")
    out = conversion_labels(leads=leads, customers=customers, snapshots=[s1, s2, s3], horizon_days=60)
    # Data end = 2025-05-15 (L3's conversion); s3 + 60d = 2025-05-31 is past it.
    # s1: X open, converts 2025-01-20 < 2025-03-02 -> 1; Y (L2) open, never converts -> 0; Z not created.
    # s2: X converted before s2 -> not open; Y has L2 (never) and L5 (converts at s2) -> 1;
    #     Z open, converts 2025-05-15 >= 2025-04-30 -> 0.
    assert as_set(out) == {
        ("X", "2025-01-01", 1),
        ("Y", "2025-01-01", 0),
        ("Y", "2025-03-01", 1),
        ("Z", "2025-03-01", 0),
    }


def test_segmentation_entities_latest_snapshot(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    out = segmentation_entities(orders=orders, customers=customers, snapshots=[T1, T2, T3, ts("2025-08-01")])
    # Latest snapshot on or before the data end (2025-07-15) is T3; C withdrew consent.
    assert list(out["customer_id"]) == ["A", "B", "D"]
    assert set(out["event_timestamp"]) == {T3}


def test_segmentation_without_snapshot_in_data_is_an_error(orders: pd.DataFrame) -> None:
    with pytest.raises(ValidationFailed, match="no snapshot on or before"):
        segmentation_entities(orders=orders, customers=None, snapshots=[ts("2026-01-01")])


def test_missing_column_names_the_table(orders: pd.DataFrame) -> None:
    with pytest.raises(ValidationFailed, match=r"'orders' lacks column\(s\) \['is_cancelled'\]"):
        churn_labels(
            orders=orders.drop(columns="is_cancelled"), customers=None, snapshots=[T1], horizon_days=90
        )

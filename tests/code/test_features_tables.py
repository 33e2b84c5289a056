"""Engagement, lead and profile features, snapshots and the customer spine, on tiny hand-checked data."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from configs.sections.features import FeaturesConfig
from features.build import FEATURE_TABLES
from features.snapshots import snapshot_dates
from tests.code.test_features_transactions import (
    build,
    customers_frame,
    events_frame,
    leads_frame,
    orders_frame,
    row,
    ts,
)

ONE_ORDER = [("A", "2024-01-10", 10.0, 0.0, "toys", "completed")]


def test_engagement_counts_rate_and_last_event():
    # Snapshot 2024-07-01. A: visits 06-21 (10 d) and 04-22 (70 d), page_view 06-30, product_view 03-01
    # (122 d: outside 90), 2 opens + 1 click in June, a support ticket 06-01 (30 d), complaints 05-01
    # (61 d) and 2023-09-01 (304 d: 365 only), a visit AT the snapshot (not seen).
    events = events_frame(
        [
            ("A", "2024-06-21", "visit"),
            ("A", "2024-04-22", "visit"),
            ("A", "2024-06-30", "page_view"),
            ("A", "2024-03-01", "product_view"),
            ("A", "2024-06-02", "email_open"),
            ("A", "2024-06-03", "email_open"),
            ("A", "2024-06-03 12:00", "email_click"),
            ("A", "2024-06-01", "support_ticket"),
            ("A", "2024-05-01", "complaint"),
            ("A", "2023-09-01", "complaint"),
            ("A", "2024-07-01", "visit"),
            ("B", "2024-06-10", "email_click"),
        ]
    )
    customers = customers_frame([{"customer_id": "A"}, {"customer_id": "B"}, {"customer_id": "C"}])
    table = build(customers, orders_frame(ONE_ORDER), events=events).tables["customer_engagement"]
    a = row(table, "A")
    assert (a["visits_30d"], a["visits_90d"]) == (1, 2)
    assert (a["page_views_90d"], a["product_views_90d"]) == (1, 0)
    assert (a["email_opens_90d"], a["email_clicks_90d"]) == (2, 1)
    assert a["email_click_rate_90d"] == 0.5
    assert a["support_tickets_90d"] == 1
    assert (a["complaints_90d"], a["complaints_365d"]) == (1, 2)
    assert a["days_since_last_event"] == 1.0  # the page view of 06-30
    b = row(table, "B")
    assert (b["email_opens_90d"], b["email_clicks_90d"]) == (0, 1)
    assert math.isnan(b["email_click_rate_90d"])  # no opens: undefined
    assert b["days_since_last_event"] == 21.0
    c = row(table, "C")
    assert c[["visits_30d", "visits_90d", "complaints_365d"]].tolist() == [0, 0, 0]
    assert math.isnan(c["days_since_last_event"])


def test_leads_latest_lead_and_open_flag():
    # A: l1 created 2024-01-01 (score 20, web), converted 2024-05-01; l2 created 2024-06-01 (score 70,
    #    fair), not converted -> latest is l2, open. At 2024-05-15: latest l1 is converted (before s),
    #    l2 not created yet -> not open.
    # B: l3 created 2024-03-01, converted 2024-07-01 = AT the 07-01 snapshot -> still open at 07-01.
    # C: l4 created 2024-07-01 (AT the snapshot): not seen. D: no lead.
    leads = leads_frame(
        [
            ("l1", "A", "2024-01-01", "web", 20.0, "2024-05-01"),
            ("l2", "A", "2024-06-01", "fair", 70.0, None),
            ("l3", "B", "2024-03-01", "web", 55.0, "2024-07-01"),
            ("l4", "C", "2024-07-01", "web", 90.0, None),
        ]
    )
    customers = customers_frame([{"customer_id": c} for c in "ABCD"])
    table = build(
        customers, orders_frame(ONE_ORDER), leads=leads, snapshots=("2024-05-15", "2024-07-01")
    ).tables["customer_leads"]
    a = row(table, "A")
    assert (a["lead_engagement_score"], a["lead_age_days"], a["lead_source"], a["is_open_lead"]) == (
        70.0,
        30.0,
        "fair",
        1,
    )
    a_may = row(table, "A", "2024-05-15")
    assert (a_may["lead_engagement_score"], a_may["lead_source"], a_may["is_open_lead"]) == (20.0, "web", 0)
    assert a_may["lead_age_days"] == 135.0  # 2024-01-01 -> 2024-05-15 (leap year: 31+29+31+30+14)
    assert row(table, "B")["is_open_lead"] == 1
    assert row(table, "B", "2024-05-15")["is_open_lead"] == 1
    for customer in "CD":
        r = row(table, customer)
        assert r["is_open_lead"] == 0 and r["lead_source"] is None
        assert math.isnan(r["lead_engagement_score"]) and math.isnan(r["lead_age_days"])


def test_latest_lead_tie_is_broken_by_lead_id():
    leads = leads_frame(
        [
            ("l9", "A", "2024-06-01", "fair", 10.0, None),
            ("l2", "A", "2024-06-01", "web", 80.0, None),
        ]
    )
    table = build(customers_frame([{"customer_id": "A"}]), orders_frame(ONE_ORDER), leads=leads)
    assert row(table.tables["customer_leads"], "A")["lead_source"] == "fair"  # "l9" > "l2"


def test_profile_attributes_and_signup_tenure():
    customers = customers_frame(
        [
            {"customer_id": "A", "signup_ts": "2024-06-01", "region": "south", "customer_type": "b2b"},
            {"customer_id": "B", "signup_ts": "2024-07-01", "region": None, "acquisition_channel": "ads"},
            {"customer_id": "C", "signup_ts": None, "sources": ["orders"]},
        ]
    )
    table = build(customers, orders_frame(ONE_ORDER)).tables["customer_profile"]
    a = row(table, "A")
    assert (a["region"], a["customer_type"], a["acquisition_channel"], a["signup_tenure_days"]) == (
        "south",
        "b2b",
        "web",
        30.0,
    )
    b = row(table, "B")
    # signup AT the snapshot is not before it: the contact does not exist yet, so neither does its
    # profile (a prospect gets a contact when it converts; seeing it earlier would leak the label)
    assert b["region"] is None and b["acquisition_channel"] is None
    assert math.isnan(b["signup_tenure_days"])
    assert math.isnan(row(table, "C")["signup_tenure_days"])


def test_spine_consent_first_seen_and_row_order():
    customers = customers_frame(
        [
            {"customer_id": "Z", "first_seen_ts": "2024-01-01"},
            {"customer_id": "A", "first_seen_ts": "2024-06-15"},  # known only from the 07-01 snapshot
            {"customer_id": "W", "consent_profiling": False},  # withdrew: never profiled
            {"customer_id": "N", "first_seen_ts": "2024-07-01"},  # first seen AT the snapshot: unknown
            {"customer_id": "M", "first_seen_ts": None},  # never seen
        ]
    )
    orders = orders_frame([("W", "2024-06-01", 50.0, 0.0, "toys", "completed")])
    events = events_frame([("W", "2024-06-01", "visit")])
    leads = leads_frame([("l1", "W", "2024-06-01", "web", 10.0, None)])
    result = build(customers, orders, events=events, leads=leads, snapshots=("2024-07-01", "2024-06-01"))
    expected = [("Z", ts("2024-06-01")), ("A", ts("2024-07-01")), ("Z", ts("2024-07-01"))]
    assert set(result.tables) == set(FEATURE_TABLES)
    for name, table in result.tables.items():
        assert list(zip(table["customer_id"], table["event_timestamp"], strict=True)) == expected, name
        assert (table["created"] == ts("2024-12-31 12:00")).all()


def test_missing_first_seen_is_derived_from_the_earliest_record():
    customers = customers_frame([{"customer_id": "A"}, {"customer_id": "B", "signup_ts": "2024-05-01"}])
    customers = customers.drop(columns="first_seen_ts")
    orders = orders_frame([("A", "2024-06-20", 10.0, 0.0, "toys", "completed")])
    result = build(customers, orders, snapshots=("2024-06-01", "2024-07-01"))
    table = result.tables["customer_transactions"]
    # A first appears with its order on 06-20, B with its signup on 05-01
    assert list(zip(table["customer_id"], table["event_timestamp"].dt.strftime("%m-%d"), strict=True)) == [
        ("B", "06-01"),
        ("A", "07-01"),
        ("B", "07-01"),
    ]
    assert any("first_seen_ts" in note for note in result.notes)


def test_snapshot_dates_grid_explicit_and_override():
    grid = snapshot_dates(
        FeaturesConfig(
            first_snapshot=date(2024, 1, 1), last_snapshot=date(2024, 3, 1), snapshot_every_days=30
        )
    )
    assert grid == [ts("2024-01-01"), ts("2024-01-31"), ts("2024-03-01")]  # 2024 is a leap year
    assert all(s.unit == "us" and str(s.tz) == "UTC" for s in grid)
    explicit = FeaturesConfig(snapshots=[date(2024, 5, 1), date(2024, 2, 1), date(2024, 5, 1)])
    assert snapshot_dates(explicit) == [ts("2024-02-01"), ts("2024-05-01")]
    assert snapshot_dates(explicit, [date(2023, 1, 1)]) == [ts("2023-01-01")]
    assert len(snapshot_dates(FeaturesConfig())) == 19  # the default: 2024-07-01 .. 2025-12-23


def test_windows_must_include_the_contract_windows():
    with pytest.raises(ValueError, match="missing \\[365\\]"):
        FeaturesConfig(windows_days=[30, 90])


def test_missing_clean_column_names_table_and_column():
    from core.errors import SourceError

    orders = orders_frame(ONE_ORDER).drop(columns="is_returned")
    with pytest.raises(SourceError, match="'orders' lacks column\\(s\\) is_returned"):
        build(customers_frame([{"customer_id": "A"}]), orders)


def test_duplicate_customer_is_refused_with_its_id():
    from core.errors import ValidationFailed

    customers = customers_frame([{"customer_id": "A"}, {"customer_id": "B"}, {"customer_id": "A"}])
    with pytest.raises(ValidationFailed, match="customer_id A more than once \\(first at row 1\\)"):
        build(customers, orders_frame(ONE_ORDER))


def test_inputs_are_not_mutated():
    customers = customers_frame([{"customer_id": "A"}]).drop(columns="first_seen_ts")
    orders = orders_frame(ONE_ORDER)
    before = (customers.copy(), orders.copy())
    build(customers, orders)
    pd.testing.assert_frame_equal(customers, before[0])
    pd.testing.assert_frame_equal(orders, before[1])

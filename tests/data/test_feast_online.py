"""Materialization and online reads on the embedded SQLite online store (real Feast).

One scenario, step by step: each materialization continues where the last one stopped and online
reads return the latest materialized snapshot, never one after the materialization's end.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.feast_support import assert_same_read, feature_table, utc, write_edge_rows, write_tables

TX_ROWS = [
    ("P1", "2025-01-01", 1),
    ("P1", "2025-01-31", 2),
    ("P1", "2025-03-02", 3),
    ("P2", "2025-01-31", 20),
]
ENG_ROWS = [("P1", "2025-01-31", 5)]
PROFILE_ROWS = [("P1", "2025-01-01", 7)]


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.fixture
def applied(settings):
    from features import feast_io

    write_tables(
        settings.path(settings.feast.source_dir),
        {
            "customer_transactions": feature_table("customer_transactions", TX_ROWS),
            "customer_engagement": feature_table("customer_engagement", ENG_ROWS),
            "customer_profile": feature_table("customer_profile", PROFILE_ROWS),
            # no customer_leads: the optional leads source is absent
        },
    )
    feast_io.apply_repo(settings)
    return settings


def test_materialize_incrementally_and_read_latest_values(applied):
    from features import feast_io

    settings = applied
    first = feast_io.materialize(settings, end=at("2025-02-10"))
    # Latest row per customer in [start, 2025-02-10]: transactions P1, P2; engagement P1; profile P1.
    assert first.per_view == {"customer_transactions": 2, "customer_engagement": 1, "customer_profile": 1}
    assert first.rows_written == 4
    assert first.skipped == ["customer_leads"]
    assert first.seconds > 0

    store = feast_io.get_store(settings)
    result = feast_io.online_features(
        store, customer_ids=["P2", "P404", "P1"], service="churn_v1", as_of=at("2025-02-10")
    )
    assert list(result.values.index) == ["P2", "P404", "P1"]
    assert list(result.values.columns) == feast_io.service_features(store, "churn_v1")
    # P1's 03-02 snapshot exists offline but lies after the materialization's end: not served.
    assert result.values.loc["P1", "recency_days"] == 2
    assert result.values.loc["P2", "monetary_90d"] == 20
    assert pd.isna(result.values.loc["P2", "visits_30d"])
    assert result.values.loc["P1", "visits_30d"] == 5
    assert result.status.loc["P1"].eq("present").all()
    assert result.status.loc["P2", "recency_days"] == "present"
    assert result.status.loc["P2", "visits_30d"] == "not_found"
    assert result.status.loc["P404"].eq("not_found").all()
    assert result.found.to_dict() == {"P2": True, "P404": False, "P1": True}
    assert result.unknown_ids == ["P404"]
    assert result.freshness.loc["P1", "customer_transactions"] == utc("2025-01-31")
    assert pd.isna(result.freshness.loc["P404", "customer_transactions"])
    assert pd.isna(result.freshness.loc["P2", "customer_engagement"])

    second = feast_io.materialize(settings, end=at("2025-03-10"))
    # Only rows in [2025-02-10, 2025-03-10]: P1's 03-02 transactions snapshot.
    assert second.per_view == {"customer_transactions": 1, "customer_engagement": 0, "customer_profile": 0}
    again = feast_io.online_features(store, customer_ids=["P1"], service="churn_v1", as_of=at("2025-03-10"))
    assert again.values.loc["P1", "frequency_90d"] == 3
    assert again.freshness.loc["P1", "customer_transactions"] == utc("2025-03-02")
    # Engagement 01-31 is 38 days old on 03-10: within the 45-day TTL.
    assert again.status.loc["P1", "visits_30d"] == "present"

    assert feast_io.materialize(settings, end=at("2025-03-10")).rows_written == 0


def test_values_older_than_the_ttl_are_served_but_marked_stale(applied):
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    store = feast_io.get_store(settings)
    # 2025-04-20: transactions 03-02 + 45 days = 04-16 (stale); engagement 01-31 (stale).
    result = feast_io.online_features(
        store, customer_ids=["P1", "P2"], service="churn_v1", as_of=at("2025-04-20")
    )
    assert result.values.loc["P1", "orders_lifetime"] == 3
    assert result.status.loc["P1", "orders_lifetime"] == "stale"
    assert result.status.loc["P1", "complaints_90d"] == "stale"
    assert result.found.all() and result.unknown_ids == []
    fresh = feast_io.online_features(store, customer_ids=["P1"], service="churn_v1", as_of=at("2025-04-15"))
    assert fresh.status.loc["P1", "orders_lifetime"] == "present"


def test_a_new_snapshot_reaches_the_online_store_on_the_next_materialize(applied):
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    rows = [*TX_ROWS, ("P2", "2025-04-01", 21)]
    write_tables(
        settings.path(settings.feast.source_dir),
        {"customer_transactions": feature_table("customer_transactions", rows)},
    )
    stats = feast_io.materialize(settings, end=at("2025-04-05"))
    assert stats.per_view["customer_transactions"] == 1
    result = feast_io.online_features(
        settings, customer_ids=["P2"], service="segmentation_v1", as_of=at("2025-04-05")
    )
    assert result.values.loc["P2", "tenure_days"] == 21
    assert result.freshness.loc["P2", "customer_transactions"] == utc("2025-04-01")


def test_conversion_service_reports_the_absent_leads_view_as_not_found(applied):
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-02-10"))
    store = feast_io.get_store(settings)
    result = feast_io.online_features(
        store, customer_ids=["P1"], service="conversion_v1", as_of=at("2025-02-10")
    )
    assert result.status.loc["P1", "lead_engagement_score"] == "not_found"
    assert result.status.loc["P1", "region"] == "present"
    assert result.values.loc["P1", "region"] == "south"  # STRING_VALUES["region"][7 % 3]
    assert result.values["region"].dtype == object
    assert result.values["signup_tenure_days"].dtype == "float64"
    assert result.unknown_ids == []


def test_empty_request_returns_empty_frames(applied):
    from features import feast_io

    settings = applied
    result = feast_io.online_features(settings, customer_ids=[], service="churn_v1")
    assert result.values.empty and result.status.empty and result.unknown_ids == []
    assert list(result.values.columns) == feast_io.service_features(settings, "churn_v1")


def test_full_materialize_rewrites_what_an_incremental_run_skips(applied):
    """A rebuilt historical snapshot (or a new, empty online store) needs `full`: the incremental run
    starts at the last end and never looks back."""
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    rebuilt = [
        ("P1", "2025-01-01", 1),
        ("P1", "2025-01-31", 2),
        ("P1", "2025-03-02", 3),
        ("P2", "2025-01-31", 99),
    ]
    write_tables(
        settings.path(settings.feast.source_dir),
        {"customer_transactions": feature_table("customer_transactions", rebuilt)},
    )
    assert feast_io.materialize(settings, end=at("2025-03-10")).rows_written == 0
    stale = feast_io.online_features(
        settings, customer_ids=["P2"], service="churn_v1", as_of=at("2025-03-10")
    )
    assert stale.values.loc["P2", "monetary_90d"] == 20  # the rebuilt value did not reach the store

    full = feast_io.materialize(settings, end=at("2025-03-10"), full=True)
    assert full.per_view["customer_transactions"] == 2  # latest row of P1 and of P2
    result = feast_io.online_features(
        settings, customer_ids=["P2"], service="churn_v1", as_of=at("2025-03-10")
    )
    assert result.values.loc["P2", "monetary_90d"] == 99


def test_columns_are_the_values_as_arrays_in_request_order(applied):
    import numpy as np

    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    result = feast_io.online_features(
        settings, customer_ids=["P404", "P1", "P2"], service="conversion_v1", as_of=at("2025-03-10")
    )
    assert list(result.columns) == list(result.values.columns)
    assert result.ids == ["P404", "P1", "P2"]
    # P2 has transactions only, which conversion_v1 does not read
    assert result.found_mask.tolist() == [False, True, False]
    assert result.unknown_ids == ["P404", "P2"]
    for name, column in result.columns.items():
        assert len(column) == 3
        frame_column = result.values[name].to_numpy()
        if column.dtype == np.float64:
            np.testing.assert_array_equal(column, frame_column.astype(np.float64))
        else:
            assert column.tolist() == frame_column.tolist()
    assert result.columns["region"].tolist()[0] is None


def test_staleness_is_judged_against_the_materialized_as_of_not_the_wall_clock(applied):
    """The data ends years before this test runs: read without an explicit as_of, the online store's
    own clock (where materialization ended) decides staleness, so the values are fresh."""
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    store = feast_io.get_store(settings)
    assert feast_io.materialized_as_of(store, ["churn_v1"]) == at("2025-03-10")
    result = feast_io.online_features(store, customer_ids=["P1", "P2"], service="churn_v1")
    # P1's snapshot 2025-03-02 is 8 days old at the data's as_of; P2's 2025-01-31 is 38 (TTL 45 days)
    assert set(result.view_status["customer_transactions"]) == {"present"}
    late = feast_io.online_features(store, customer_ids=["P2"], service="churn_v1", as_of=at("2025-04-01"))
    assert late.view_status["customer_transactions"][0] == "stale"


def test_delete_online_removes_one_customer_from_every_view(applied):
    """Consent withdrawal / forget: the customer's rows leave each view's table, the others stay."""
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    store = feast_io.get_store(settings)
    deleted = feast_io.delete_online(store, ["P1", "P404"])
    assert deleted > 0  # one row per (customer, feature) in Feast's SQLite layout
    after = feast_io.online_features(
        store, customer_ids=["P1", "P2"], service="churn_v1", as_of=at("2025-03-10")
    )
    assert after.unknown_ids == ["P1"]
    assert after.values.loc["P2", "monetary_lifetime"] == 20
    assert feast_io.delete_online(store, ["P1"]) == 0  # nothing left to delete


def test_the_direct_sqlite_read_equals_feasts_online_read(applied):
    """The hot path reads Feast's SQLite tables itself (one query per view, only the features asked
    for): for known, unknown and repeated ids it gives exactly what Feast's `online_read` gives."""
    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    store = feast_io.get_store(settings)
    plan = feast_io._merged_plan(store, ("churn_v1", "conversion_v1"))
    features_of: dict[str, list[str]] = {}
    for name, view in plan.view_of.items():
        features_of.setdefault(view, []).append(name)
    features_of.pop("customer_leads", None)  # never materialized here: no table to read
    ids = ["P1", "P404", "P2", "P1", "P2"]
    direct = feast_io._read_sqlite(store, plan, features_of, ids)
    assert_same_read(direct, feast_io._read_provider(store, plan, features_of, ids))
    assert direct["customer_transactions"][0].tolist()[1] == -1  # P404: no row
    assert direct["customer_transactions"][1]["recency_days"][0] == 3  # the latest snapshot's value


@pytest.mark.parametrize("customers", [3, 120])  # one value at a time, and the columnar decoder
def test_the_direct_sqlite_read_equals_feasts_on_every_kind_of_value(applied, customers):
    """Values of every kind Feast can store (NaN, infinities, -0.0, extreme and negative ints, int32,
    float32, bools, null, empty, strings, a number in a string feature), rows missing or stale, unknown
    and repeated ids: the direct read equals Feast's `online_read` value by value, and serving's
    `online_features` returns them."""
    import numpy as np

    from features import feast_io

    settings = applied
    feast_io.materialize(settings, end=at("2025-03-10"))
    store = feast_io.get_store(settings)
    written = write_edge_rows(store, "customer_profile", customers=customers, as_of=utc("2025-03-10"))
    written += write_edge_rows(store, "customer_engagement", customers=customers, as_of=utc("2025-03-10"))
    plan = feast_io._merged_plan(store, ("churn_v1", "conversion_v1", "segmentation_v1"))
    features_of: dict[str, list[str]] = {}
    for name, view in plan.view_of.items():
        features_of.setdefault(view, []).append(name)
    ids = [*written, "P404", written[0], "P1", written[-1], written[0]]
    direct = feast_io._read_sqlite(store, plan, features_of, ids)
    assert_same_read(direct, feast_io._read_provider(store, plan, features_of, ids))
    region = direct["customer_profile"][1]["region"]
    assert "Zürich" in region.tolist() or customers < 8
    assert np.isnan(direct["customer_engagement"][1]["visits_30d"]).any()

    result = feast_io.online_features(
        store,
        customer_ids=ids,
        service=("churn_v1", "conversion_v1", "segmentation_v1"),
        as_of=at("2025-03-10"),
    )
    assert result.columns["region"].tolist() == region.tolist()
    assert "P404" in result.unknown_ids
    assert set(result.view_status["customer_profile"]) >= {"present", "not_found"}


@pytest.mark.parametrize("changed_on", ["feast's connection", "the reader's connection"])
def test_a_bulk_read_on_two_connections_sees_each_new_materialization(applied, monkeypatch, changed_on):
    """A bulk read (>= 32 ids) reads half of its views on a second connection in a reader thread: after
    each materialization, both halves give the new values, exactly what Feast's `online_read` gives."""
    from features import feast_io

    if changed_on != "feast's connection":  # the view that changes is read by the reader thread
        tx = "customer_transactions"
        monkeypatch.setattr(feast_io, "_halves", lambda f: ([v for v in f if v != tx], [tx]))
    settings = applied
    store = feast_io.get_store(settings)
    plan = feast_io._merged_plan(store, ("churn_v1", "segmentation_v1"))
    features_of: dict[str, list[str]] = {}
    for name, view in plan.view_of.items():
        features_of.setdefault(view, []).append(name)
    features_of.pop("customer_leads", None)  # never materialized here: no table to read
    here, there = feast_io._halves(features_of)
    assert here and there  # both connections read
    ids = ["P1", "P2", "P404"] * 12
    for end, rows in (("2025-03-10", TX_ROWS), ("2025-04-05", [*TX_ROWS, ("P2", "2025-04-01", 21)])):
        write_tables(
            settings.path(settings.feast.source_dir),
            {"customer_transactions": feature_table("customer_transactions", rows)},
        )
        feast_io.materialize(settings, end=at(end))
        direct = feast_io._read_sqlite(store, plan, features_of, ids)
        assert_same_read(direct, feast_io._read_provider(store, plan, features_of, ids))
        result = feast_io.online_features(store, customer_ids=ids, service=("churn_v1", "segmentation_v1"))
        assert result.columns["tenure_days"][1] == (20 if end == "2025-03-10" else 21)

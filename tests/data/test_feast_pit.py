"""Point-in-time correctness of `training_frame` on hand-built feature tables (real Feast, DuckDB).

Every numeric feature of a snapshot row equals that row's "marker", so the marker a training row gets
says which snapshot it saw. Snapshots are taken every 30 days; views have a 45-day TTL.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from tests.feast_support import feature_table, utc, write_tables

TX_ROWS = [
    ("P1", "2025-01-01", 1),
    ("P1", "2025-01-31", 2),
    ("P1", "2025-03-02", 3),
    ("P2", "2025-01-31", 20),
]
ENG_ROWS = [("P1", "2025-01-31", 5), ("P2", "2025-01-01", 21), ("P2", "2025-01-31", 22)]
PROFILE_ROWS = [("P1", "2025-01-01", 7), ("P2", "2025-01-01", 8)]
LEAD_ROWS = [("P2", "2025-01-31", 30)]
TTL = timedelta(days=45)


@pytest.fixture(scope="module")
def pit_store(tmp_path_factory):
    from configs.settings import load_settings
    from features import feast_io

    data_dir = tmp_path_factory.mktemp("feast_pit")
    settings = load_settings(data_dir=str(data_dir))
    engagement = feature_table("customer_engagement", ENG_ROWS)
    # A rebuilt snapshot: same (customer, time), later `created`; the later build (marker 22) must win.
    rebuilt = feature_table("customer_engagement", [("P2", "2025-01-31", 23)])
    engagement["created"] = engagement["created"] + pd.Timedelta(days=1)
    write_tables(
        settings.path(settings.feast.source_dir),
        {
            "customer_transactions": feature_table("customer_transactions", TX_ROWS),
            "customer_engagement": pd.concat([rebuilt, engagement], ignore_index=True),
            "customer_profile": feature_table("customer_profile", PROFILE_ROWS),
            "customer_leads": feature_table("customer_leads", LEAD_ROWS),
        },
    )
    feast_io.apply_repo(settings)
    return settings, feast_io.get_store(settings)


# (customer, entity time, expected transactions marker, expected engagement marker); None = null
CASES = [
    ("P1", "2024-12-15", None, None),  # before the customer's first snapshot
    ("P1", "2025-01-01", 1, None),  # exactly at a snapshot: that snapshot is visible (computed before it)
    ("P1", "2025-01-20", 1, None),  # engagement starts at 01-31
    ("P1", "2025-02-15", 2, 5),
    ("P1", "2025-03-01 23:59", 2, 5),  # the 03-02 snapshot is one minute in the future: not seen
    ("P1", "2025-03-20", 3, None),  # engagement 01-31 + 45 days = 03-17: past the TTL
    ("P2", "2025-01-15", None, 21),
    ("P3", "2025-02-01", None, None),  # unknown customer
    ("P1", "2025-06-01", None, None),  # last snapshot 03-02 + 45 days = 04-16: past the TTL
    ("P1", "2025-02-15", 2, 5),  # a duplicate entity row stays a separate row
    ("P2", "2025-03-16", 20, 22),  # one day inside the TTL; 22 is the later build of 01-31
    ("P2", "2025-03-18", None, None),  # one day past it
]


def _entity_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": [c[0] for c in CASES],
            "event_timestamp": [utc(c[1]) for c in CASES],
            "label": np.arange(len(CASES)) % 2,
        },
        # A non-default index in a scrambled order: both must come back unchanged.
        index=pd.Index([100 + (7 * i) % len(CASES) for i in range(len(CASES))], name="row_id"),
    )
    return frame


def _marker(value: float) -> int | None:
    return None if pd.isna(value) else int(value)


def test_training_frame_sees_only_the_past_within_ttl(pit_store):
    from features import feast_io

    settings, store = pit_store
    entity = _entity_frame()
    out = feast_io.training_frame(store, entity_df=entity, service="churn_v1")

    assert len(out) == len(CASES)
    assert out.index.equals(entity.index)
    pd.testing.assert_frame_equal(out[entity.columns], entity)
    for position, (customer, when, tx, eng) in enumerate(CASES):
        row = out.iloc[position]
        assert _marker(row["recency_days"]) == tx, (customer, when, "transactions")
        assert _marker(row["monetary_lifetime"]) == tx, (customer, when, "transactions")
        assert _marker(row["visits_30d"]) == eng, (customer, when, "engagement")
        assert _marker(row["complaints_365d"]) == eng, (customer, when, "engagement")


def test_training_frame_columns_are_bare_names_in_service_order(pit_store):
    from features import feast_io

    _, store = pit_store
    out = feast_io.training_frame(store, entity_df=_entity_frame(), service="conversion_v1")
    features = feast_io.service_features(store, "conversion_v1")
    assert list(out.columns) == ["customer_id", "event_timestamp", "label", *features]
    assert not any(":" in c or "__" in c for c in features)
    p2 = out[(out["customer_id"] == "P2") & (out["event_timestamp"] == utc("2025-03-16"))].iloc[0]
    assert p2["lead_source"] == "web"  # STRING_VALUES["lead_source"][30 % 3]
    assert p2["region"] is None or pd.isna(p2["region"])  # profile 01-01 + 45 days = 02-15: expired
    p2_early = out[(out["customer_id"] == "P2") & (out["event_timestamp"] == utc("2025-01-15"))].iloc[0]
    assert p2_early["region"] == "east"  # STRING_VALUES["region"][8 % 3]
    assert _marker(p2_early["signup_tenure_days"]) == 8


def _reference_marker(rows: list[tuple[str, str, int]], customer: str, when: pd.Timestamp) -> int | None:
    """Brute force: the latest snapshot at or before `when` and within the TTL, else None."""
    seen = [
        (utc(day), m) for c, day, m in rows if c == customer and utc(day) <= when and utc(day) >= when - TTL
    ]
    return max(seen)[1] if seen else None


def test_training_frame_matches_a_brute_force_point_in_time_join(pit_store):
    from features import feast_io

    _, store = pit_store
    grid = pd.date_range("2024-12-01", "2025-06-01", freq="36h", tz="UTC")
    entity = pd.DataFrame(
        [(c, t) for t in grid for c in ("P1", "P2", "P3")], columns=["customer_id", "event_timestamp"]
    )
    out = feast_io.training_frame(store, entity_df=entity, service="churn_v1")
    assert len(out) == len(entity)
    # ENG_ROWS holds the later build of P2 01-31 (22); the older one (23) must never show.
    for row in out.itertuples(index=False):
        expected_tx = _reference_marker(TX_ROWS, row.customer_id, row.event_timestamp)
        expected_eng = _reference_marker(ENG_ROWS, row.customer_id, row.event_timestamp)
        assert _marker(row.frequency_365d) == expected_tx, (row.customer_id, row.event_timestamp)
        assert _marker(row.email_opens_90d) == expected_eng, (row.customer_id, row.event_timestamp)


def test_every_configured_service_resolves(pit_store):
    from features import feast_io

    settings, store = pit_store
    entity = pd.DataFrame({"customer_id": ["P1"], "event_timestamp": [utc("2025-02-15")]})
    for service in settings.feast.services:
        features = feast_io.service_features(store, service)
        assert features and len(set(features)) == len(features), service
        out = feast_io.training_frame(store, entity_df=entity, service=service)
        assert list(out.columns) == ["customer_id", "event_timestamp", *features], service


def test_naive_and_nanosecond_entity_timestamps_are_taken_as_utc(pit_store):
    from features import feast_io

    _, store = pit_store
    entity = pd.DataFrame(
        {"customer_id": ["P1", "P1"], "event_timestamp": pd.to_datetime(["2025-01-20", "2025-02-15"])}
    )
    out = feast_io.training_frame(store, entity_df=entity, service="segmentation_v1")
    assert [_marker(v) for v in out["recency_days"]] == [1, 2]
    assert [_marker(v) for v in out["visits_90d"]] == [None, 5]


def test_empty_entity_frame_gives_empty_frame_with_feature_columns(pit_store):
    from features import feast_io

    _, store = pit_store
    entity = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype=object),
            "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )
    out = feast_io.training_frame(store, entity_df=entity, service="churn_v1")
    assert out.empty
    assert list(out.columns) == [
        "customer_id",
        "event_timestamp",
        *feast_io.service_features(store, "churn_v1"),
    ]

"""Feature tables match docs/CONTRACTS.md exactly: names, order, dtypes, rows, Parquet schema."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.build import FEATURE_DTYPES, FEATURE_TABLES, KEY_COLUMNS, build_features
from tests.code.test_features_transactions import (
    customers_frame,
    events_frame,
    leads_frame,
    orders_frame,
    ts,
)

CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "CONTRACTS.md"


def contract_feature_tables() -> dict[str, list[str]]:
    """The "Feature tables" section of docs/CONTRACTS.md: table -> feature columns, in order."""
    text = CONTRACTS.read_text(encoding="utf-8")
    section = text.split("## Feature tables", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n- ", "\n" + section.split("\n- ", 1)[1])
    tables: dict[str, list[str]] = {}
    for bullet in filter(None, (b.strip() for b in bullets)):
        head, _, body = bullet.partition(":")
        name = re.match(r"`(\w+)`", head)
        if name:
            tables[name.group(1)] = re.findall(r"`([a-z0-9_]+)`", body.split("\nCounts are")[0])
    return tables


def test_feature_tables_constant_equals_the_contract():
    contract = contract_feature_tables()
    assert set(contract) == {
        "customer_transactions",
        "customer_engagement",
        "customer_leads",
        "customer_profile",
    }
    assert {name: list(cols) for name, cols in FEATURE_TABLES.items()} == contract


def test_feature_names_are_unique_snake_case_and_typed():
    names = [c for cols in FEATURE_TABLES.values() for c in cols]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    # the contract says which are strings; counts are int64; money, rates, days float64
    assert {n for n, k in FEATURE_DTYPES.items() if k == "string"} == {
        "region",
        "customer_type",
        "acquisition_channel",
        "lead_source",
    }
    assert {n for n, k in FEATURE_DTYPES.items() if k == "int64"} == {
        "frequency_30d",
        "frequency_90d",
        "frequency_365d",
        "category_breadth_365d",
        "orders_lifetime",
        "visits_30d",
        "visits_90d",
        "page_views_90d",
        "product_views_90d",
        "email_opens_90d",
        "email_clicks_90d",
        "support_tickets_90d",
        "complaints_90d",
        "complaints_365d",
        "is_open_lead",
    }


def write_clean(data_dir: Path, *, as_of: str = "2024-12-31T00:00:00+00:00", **tables: pd.DataFrame) -> None:
    """Clean tables as `persona ingest` leaves them, with the report that lists absent sources and the
    data's clock (`as_of`, as if given to ingest)."""
    clean = data_dir / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(clean / f"{name}.parquet", index=False)
    absent = [name for name in ("events", "leads") if not (clean / f"{name}.parquet").is_file()]
    report = {"as_of": as_of, "absent": absent}
    (clean / "ingest_report.json").write_text(json.dumps(report), encoding="utf-8")


@pytest.fixture
def full_clean(data_dir: Path) -> None:
    write_clean(
        data_dir,
        customers=customers_frame(
            [
                {"customer_id": "P2", "signup_ts": "2024-02-01", "first_seen_ts": "2024-03-01"},
                {"customer_id": "P1", "signup_ts": "2024-01-01"},
                {"customer_id": "P3", "consent_profiling": False},
            ]
        ),
        orders=orders_frame(
            [
                ("P1", "2024-03-01", 10.0, 1.0, "toys", "completed"),
                ("P3", "2024-03-01", 99.0, 0.0, "toys", "completed"),
            ]
        ),
        events=events_frame([("P2", "2024-03-05", "visit"), ("P3", "2024-03-05", "visit")]),
        leads=leads_frame([("l1", "P2", "2024-02-02", "web", 30.0, None)]),
    )


def test_built_files_have_the_contract_schema_and_row_order(settings, full_clean, data_dir):
    report = build_features(settings, snapshots=[date(2024, 4, 1), date(2024, 2, 15)])
    assert set(report.written) == set(FEATURE_TABLES) and not report.skipped
    kinds = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    for name, features in FEATURE_TABLES.items():
        path = data_dir / "features" / f"{name}.parquet"
        assert report.written[name] == (path, 3)
        schema = pq.read_schema(path)
        assert schema.names == [*KEY_COLUMNS, *features]
        assert schema.field("customer_id").type == pa.string()
        assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
        assert schema.field("created").type == pa.timestamp("us", tz="UTC")
        for feature in features:
            assert schema.field(feature).type == kinds[FEATURE_DTYPES[feature]], (name, feature)
        frame = pd.read_parquet(path)
        # P1 is first seen in 2020, P2 on 2024-03-01 (after the first snapshot); P3 withdrew consent
        assert list(zip(frame["customer_id"], frame["event_timestamp"], strict=True)) == [
            ("P1", ts("2024-02-15")),
            ("P1", ts("2024-04-01")),
            ("P2", ts("2024-04-01")),
        ]
        assert "P3" not in set(frame["customer_id"])
        assert frame["created"].nunique() == 1
        assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert not list((data_dir / "features").glob("*.tmp")) and not list((data_dir / "features").glob(".*"))

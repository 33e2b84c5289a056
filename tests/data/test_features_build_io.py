"""`build_features` and `persona features build` end to end on tiny clean tables in a tmp data dir."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.build import build_features
from persona.cli import main
from core.errors import SourceError
from tests.code.test_features_transactions import customers_frame, events_frame, orders_frame, ts
from tests.data.test_features_contract import write_clean

ORDERS = [
    ("P1", "2024-03-01", 10.0, 0.0, "toys", "completed"),
    ("P2", "2024-03-10", 5.0, 0.0, "food", "returned"),
]


def _orders_only(data_dir: Path) -> None:
    customers = customers_frame(
        [{"customer_id": "P1"}, {"customer_id": "P2"}, {"customer_id": "P9", "consent_profiling": False}]
    )
    customers["sources"] = [["orders"]] * 3  # no CRM contacts fed these customers
    write_clean(data_dir, customers=customers, orders=orders_frame(ORDERS))


def test_orders_only_builds_transactions_and_says_why_the_rest_is_missing(settings, data_dir):
    _orders_only(data_dir)
    report = build_features(settings, snapshots=[date(2024, 4, 1)])
    assert list(report.written) == ["customer_transactions"]
    assert report.skipped == {
        "customer_engagement": "the optional source 'events' is absent from the clean data",
        "customer_leads": "the optional source 'leads' is absent from the clean data",
        "customer_profile": "the optional source 'contacts' is absent from the clean data",
    }
    frame = pd.read_parquet(data_dir / "features" / "customer_transactions.parquet")
    assert frame["customer_id"].tolist() == ["P1", "P2"]  # P9 withdrew consent
    assert frame["frequency_90d"].tolist() == [1, 1]
    assert frame["monetary_90d"].tolist() == [10.0, 0.0]  # P2's only order was returned
    written = sorted(p.name for p in (data_dir / "features").iterdir())
    assert written == ["build_report.json", "customer_transactions.parquet"]  # the data's clock travels along


def test_a_table_whose_source_disappeared_is_moved_aside(settings, data_dir):
    _orders_only(data_dir)
    write_clean(data_dir, events=events_frame([("P1", "2024-03-02", "visit")]))
    build_features(settings, snapshots=[date(2024, 4, 1)])
    engagement = data_dir / "features" / "customer_engagement.parquet"
    assert pd.read_parquet(engagement)["visits_90d"].tolist() == [1, 0]
    (data_dir / "clean" / "events.parquet").unlink()
    write_clean(data_dir)  # the new ingest report lists events as absent
    report = build_features(settings, snapshots=[date(2024, 4, 1)])
    assert not engagement.exists()
    stale = engagement.with_name("customer_engagement.parquet.stale")
    assert pd.read_parquet(stale)["visits_90d"].tolist() == [1, 0]  # kept, but not where Feast reads
    assert any("customer_engagement.parquet.stale" in note for note in report.notes)


def test_a_failed_build_leaves_the_previous_tables_untouched(settings, data_dir):
    _orders_only(data_dir)
    build_features(settings, snapshots=[date(2024, 4, 1)])
    path = data_dir / "features" / "customer_transactions.parquet"
    before = path.read_bytes()
    write_clean(data_dir, events=events_frame([("P1", "2024-03-02", "visit")]).drop(columns="event_type"))
    with pytest.raises(SourceError, match="clean table 'events' lacks column\\(s\\) event_type"):
        build_features(settings, snapshots=[date(2024, 5, 1)])
    assert path.read_bytes() == before
    assert not list((data_dir / "features").glob(".*.building"))  # no half-built table left behind


def test_tables_streamed_by_the_engine_equal_the_pandas_path(settings, data_dir, tmp_path):
    """`build_features` writes the engine's batches straight to Parquet; the file is the one the pandas
    result of `compute_feature_tables` gives through `write_parquet_atomic` (schema and values)."""
    import pyarrow.parquet as pq

    from features.build import compute_feature_tables, write_parquet_atomic

    _orders_only(data_dir)
    events = events_frame([("P1", "2024-03-02", "visit"), ("P2", "2024-04-20", "page_view")])
    write_clean(data_dir, events=events)
    snapshots = [date(2024, 4, 1), date(2024, 5, 1)]
    created = pd.Timestamp("2024-06-01", tz="UTC")
    report = build_features(settings, snapshots=snapshots, created=created.to_pydatetime())
    clean = data_dir / "clean"
    in_pandas = compute_feature_tables(
        customers=pd.read_parquet(clean / "customers.parquet"),
        orders=pd.read_parquet(clean / "orders.parquet"),
        events=pd.read_parquet(clean / "events.parquet"),
        leads=None,
        snapshots=[pd.Timestamp(d, tz="UTC") for d in snapshots],
        created=created,
    )
    assert set(report.written) == set(in_pandas.tables) == {"customer_transactions", "customer_engagement"}
    for name, frame in in_pandas.tables.items():
        assert len(frame) == 4  # two customers at two snapshots
        write_parquet_atomic(frame, tmp_path / f"{name}.parquet")
        streamed, expected = (
            pq.read_table(report.written[name][0]),
            pq.read_table(tmp_path / f"{name}.parquet"),
        )
        assert streamed.schema.remove_metadata() == expected.schema.remove_metadata(), name
        assert streamed.schema.field("customer_id").nullable is False
        assert streamed.equals(expected), name


def test_missing_orders_is_a_clear_error(settings, data_dir):
    write_clean(data_dir, customers=customers_frame([{"customer_id": "P1"}]))
    with pytest.raises(SourceError, match="clean table missing: .*orders.parquet") as err:
        build_features(settings)
    assert "persona ingest" in str(err.value)


def test_unreadable_clean_table_names_the_file(settings, data_dir):
    _orders_only(data_dir)
    (data_dir / "clean" / "orders.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="cannot read clean table 'orders' at .*orders.parquet"):
        build_features(settings)


def test_cli_build_with_snapshot_options(data_dir, monkeypatch, capsys):
    _orders_only(data_dir)
    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    code = main(["features", "build", "--snapshot", "2024-04-01", "--snapshot", "2024-03-05"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 snapshot(s) from 2024-03-05 to 2024-04-01" in out
    assert "customer_transactions: 4 rows" in out
    assert "customer_engagement: not built: the optional source 'events' is absent" in out
    frame = pd.read_parquet(data_dir / "features" / "customer_transactions.parquet")
    assert sorted(set(frame["event_timestamp"])) == [ts("2024-03-05"), ts("2024-04-01")]


def test_cli_reports_a_missing_clean_table_as_an_error(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    assert main(["features", "build", "--snapshot", "2024-04-01"]) == 2
    assert "error: no clean data in" in capsys.readouterr().err

"""Sources that cannot be read stop the run with a SourceError naming the source, file and column, and
leave the previous good output in place."""

from __future__ import annotations

import gzip
import sqlite3

import pandas as pd
import pytest

from configs.settings import ConfigError, load_settings
from features.ingest import load_clean, run_ingest
from persona.cli import main
from core.errors import SourceError, ValidationFailed

HEADER = "order_id,customer_ref,order_ts,amount,discount,quantity,category,status"
GOOD = [
    "O1,ann@example.com,2024-02-01T12:00:00Z,100,10,2,books,completed",
    "O2,13800138000,2024-02-03,20,0,1,toys,completed",
]


def orders_only(data_dir, **orders):
    return load_settings(
        data_dir=str(data_dir),
        sources={"orders": orders, "contacts": None, "events": None, "leads": None, "as_of": "2025-01-01"},
    )


def write_orders(data_dir, lines, header=HEADER, name="orders.csv.gz"):
    raw = data_dir / "raw"
    raw.mkdir(exist_ok=True)
    with gzip.open(raw / name, "wt") as f:
        f.write("\n".join([header, *lines]) + "\n")
    return raw / name


def test_missing_file_names_source_and_path(data_dir) -> None:
    settings = orders_only(data_dir)
    with pytest.raises(SourceError, match=r"source 'orders': file not found: .*raw/orders\.csv\.gz"):
        run_ingest(settings)


def test_missing_optional_file_is_an_error_not_a_silent_skip(settings) -> None:
    write_orders(settings.data_dir, GOOD)
    with pytest.raises(SourceError, match=r"source 'contacts': database file not found: .*crm\.sqlite"):
        run_ingest(settings)


def test_missing_required_column_names_source_file_and_column(data_dir) -> None:
    write_orders(
        data_dir, ["O1,a@b.cn,2024-01-01,2,1"], header="order_id,customer_ref,order_ts,discount,quantity"
    )
    with pytest.raises(
        SourceError, match=r"source 'orders' \(.*orders\.csv\.gz\): required column 'amount' is missing"
    ):
        run_ingest(orders_only(data_dir))


def test_mapped_column_missing_names_both_names(data_dir) -> None:
    write_orders(data_dir, GOOD)
    settings = orders_only(data_dir, columns={"amount": "total"})
    with pytest.raises(SourceError, match=r"required column 'total' \(for amount\) is missing"):
        run_ingest(settings)


def test_unparseable_column_is_the_wrong_type(data_dir) -> None:
    write_orders(
        data_dir,
        ["O1,ann@example.com,yesterday,1,0,1,x,completed", "O2,ann@example.com,last week,1,0,1,x,completed"],
    )
    with pytest.raises(
        SourceError,
        match=r"source 'orders' \(.*\): column 'order_ts' cannot be read as timestamps.*row 1: 'yesterday'",
    ):
        run_ingest(orders_only(data_dir))


def test_sql_table_missing(data_dir) -> None:
    write_orders(data_dir, GOOD)
    with sqlite3.connect(data_dir / "raw" / "crm.sqlite") as conn:
        conn.execute("CREATE TABLE people (contact_id TEXT)")
    settings = load_settings(
        data_dir=str(data_dir),
        sources={
            "contacts": {"url": "sqlite:///{data_dir}/raw/crm.sqlite", "table": "contacts"},
            "events": None,
            "leads": None,
        },
    )
    with pytest.raises(
        SourceError,
        match=r"source 'contacts' \(sqlite:.*crm\.sqlite table contacts\): table 'contacts' not found",
    ):
        run_ingest(settings)


def test_unknown_persona_column_in_mapping_is_a_config_error(data_dir) -> None:
    with pytest.raises(ConfigError, match=r"orders\.columns: unknown Persona column name\(s\) \['ammount'\]"):
        orders_only(data_dir, columns={"ammount": "amount"})


def test_failed_run_keeps_the_previous_good_output(data_dir) -> None:
    settings = orders_only(data_dir)
    write_orders(data_dir, GOOD)
    run_ingest(settings)
    before = load_clean(settings, "orders")
    report_before = (data_dir / "clean" / "ingest_report.json").read_text()
    write_orders(data_dir, ["O9,ann@example.com,2024-01-01"], header="order_id,customer_ref,order_ts")
    with pytest.raises(SourceError):
        run_ingest(settings)
    pd.testing.assert_frame_equal(load_clean(settings, "orders"), before)
    assert (data_dir / "clean" / "ingest_report.json").read_text() == report_before
    assert not [p for p in (data_dir / "clean").iterdir() if p.name.startswith(".")]


def test_every_order_rejected_stops_with_the_first_reason(data_dir) -> None:
    write_orders(
        data_dir,
        [
            "O1,ann@example.com,2024-01-01,-1,0,1,x,completed",
            "O2,ann@example.com,2024-01-01,2,0,1,x,completed",
        ],
    )
    settings = orders_only(data_dir)
    with pytest.raises(
        ValidationFailed, match=r"no usable order \(e\.g\. row 1, column amount: amount_negative\)"
    ):
        run_ingest(settings, as_of="2023-01-01")  # everything is in the future of as_of


def test_cli_prints_error_and_exits_2(data_dir, tmp_path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {data_dir}\nsources:\n  contacts: null\n  events: null\n  leads: null\n")
    assert main(["--config", str(config), "ingest"]) == 2
    assert "error: source 'orders': file not found" in capsys.readouterr().err


def test_load_clean_before_any_ingest(settings) -> None:
    with pytest.raises(SourceError, match="no clean data"):
        load_clean(settings, "customers")

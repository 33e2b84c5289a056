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
            "O2,ann@example.com,2024-01-01,2,0,0,x,completed",  # quantity_not_positive
        ],
    )
    settings = orders_only(data_dir)
    with pytest.raises(
        ValidationFailed, match=r"no usable order \(e\.g\. row 1, column amount: amount_negative\)"
    ):
        run_ingest(settings)


def test_as_of_before_every_row_names_source_and_column(data_dir, tmp_path, capsys) -> None:
    write_orders(data_dir, GOOD)
    (data_dir / "clean").mkdir()
    (data_dir / "clean" / "ingest_report.json").write_text("{}")  # a previous run's output stays
    with pytest.raises(SourceError, match=r"^source 'orders', column 'order_ts': as_of 2023-01-01T00:00:00\+00:00 "
                       r"is before every row \(the earliest is 2024-02-01T12:00:00\+00:00\)\n"):
        run_ingest(orders_only(data_dir), as_of="2023-01-01")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nsources:\n  as_of: 2023-06-01\n  contacts: null\n  events: null\n  leads: null\n"
    )
    assert main(["--config", str(config), "ingest"]) == 2
    err = capsys.readouterr().err
    assert "\nerror: source 'orders', column 'order_ts': as_of 2023-06-01T00:00:00+00:00 is before every row" in err
    assert (data_dir / "clean" / "ingest_report.json").read_text() == "{}"


def test_cli_prints_error_and_exits_2(data_dir, tmp_path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {data_dir}\nsources:\n  contacts: null\n  events: null\n  leads: null\n")
    assert main(["--config", str(config), "ingest"]) == 2
    assert "error: source 'orders': file not found" in capsys.readouterr().err


def test_load_clean_before_any_ingest(settings) -> None:
    with pytest.raises(SourceError, match="no clean data"):
        load_clean(settings, "customers")


def test_orders_without_an_id_column_are_named_by_their_row(data_dir, tmp_path) -> None:
    write_orders(
        data_dir,
        ["ann@example.com,2024-02-01,100", "ann@example.com,2024-02-01,100", "bob@example.com,2024-02-02,7"],
        header="customer_ref,order_ts,amount",
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nsources:\n  as_of: 2025-01-01T00:00:00Z\n"
        "  orders:\n    path: '{data_dir}/raw/orders.csv.gz'\n    columns: {order_id: null}\n"
    )
    settings = load_settings(config)
    run_ingest(settings)
    orders = load_clean(settings, "orders")
    # rows 1 and 2 are an exact duplicate (removed, counted); the ids are the data rows kept
    assert orders["order_id"].tolist() == ["row-1", "row-3"]
    assert orders["amount"].tolist() == [100.0, 7.0]


def test_orders_with_no_usable_customer_key_name_the_column_and_the_setting(data_dir, tmp_path, capsys) -> None:
    write_orders(
        data_dir,
        ["O1,n/a,2024-02-01T12:00:00Z,100,0,1,x,completed", "O2,-,2024-02-03,20,0,1,x,completed"],
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nsources:\n  as_of: 2025-01-01T00:00:00Z\n"
        "  orders:\n    path: '{data_dir}/raw/orders.csv.gz'\n"
    )
    before = sorted(p.name for p in data_dir.rglob("*"))
    assert main(["--config", str(config), "ingest"]) == 2
    err = capsys.readouterr().err
    assert "error: source 'orders' (" in err
    assert "no usable order (e.g. row 1, column customer_ref: invalid_customer_ref)" in err
    assert "hint: sources.orders.customer_key is 'contact'" in err
    assert sorted(p.name for p in data_dir.rglob("*")) == before  # nothing written


def test_an_optional_source_with_zero_valid_rows_stops_the_run(data_dir, tmp_path) -> None:
    write_orders(data_dir, GOOD)
    (data_dir / "raw" / "events.csv").write_text(
        "user_ref,event_type,event_ts\nann@example.com,visit,not a date\n,visit,2024-01-01\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nsources:\n  as_of: 2025-01-01T00:00:00Z\n"
        "  orders:\n    path: '{data_dir}/raw/orders.csv.gz'\n"
        "  events:\n    path: '{data_dir}/raw/events.csv'\n"
    )
    with pytest.raises(
        ValidationFailed,
        match=r"source 'events' \(.*events\.csv\): no usable row \(e\.g\. row 1, column event_ts: ",
    ):
        run_ingest(load_settings(config))


def test_a_config_naming_a_column_the_file_lacks_exits_2(data_dir, tmp_path, capsys) -> None:
    write_orders(data_dir, GOOD)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nsources:\n  orders:\n    path: '{{data_dir}}/raw/orders.csv.gz'\n"
        "    columns: {category: product_group}\n"
    )
    assert main(["--config", str(config), "ingest"]) == 2
    assert "column 'product_group' (sources.orders.columns.category) not found" in capsys.readouterr().err

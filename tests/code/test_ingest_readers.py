"""Readers: CSV (plain, gzipped, other separators), Parquet (plain, gzipped), SQL, with the column mapping."""

from __future__ import annotations

import gzip
import sqlite3

import pandas as pd
import pytest

from configs.sections.sources import SourceConfig
from core.errors import SourceError
from features.readers import read_source


def test_csv_with_semicolons_maps_columns_and_keeps_text(settings) -> None:
    path = settings.data_dir / "events.csv"
    path.write_text("id;who;what;when\n1;a@b.cn;visit;2024-01-01\n2; 0086 138 ;page_view;\n")
    cfg = SourceConfig(
        path=str(path),
        csv_sep=";",
        columns={"event_id": "id", "user_ref": "who", "event_type": "what", "event_ts": "when"},
    )
    table = read_source("events", cfg, settings=settings)
    assert list(table.frame.columns) == ["user_ref", "event_type", "event_ts", "event_id"]
    assert table.frame["user_ref"].tolist() == ["a@b.cn", " 0086 138 "]  # raw text, untouched
    assert pd.isna(table.frame["event_ts"].iloc[1])
    assert table.missing_optional == ["channel"]


@pytest.mark.parametrize("gz", [False, True])
def test_parquet_plain_and_gzipped(settings, gz: bool) -> None:
    frame = pd.DataFrame({"lead_id": ["L1"], "created_at": ["2024-01-01"], "engagement_score": [12.5]})
    path = settings.data_dir / ("leads.parquet.gz" if gz else "leads.parquet")
    frame.to_parquet(settings.data_dir / "tmp.parquet")
    data = (settings.data_dir / "tmp.parquet").read_bytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    table = read_source("leads", SourceConfig(path=str(path)), settings=settings)
    assert table.frame["engagement_score"].tolist() == [12.5]
    assert "email" in table.missing_optional and "phone" in table.missing_optional


def test_sql_table_through_data_dir_template(settings) -> None:
    with sqlite3.connect(settings.data_dir / "crm.sqlite") as conn:
        conn.execute("CREATE TABLE people (cid TEXT, mail TEXT, full_name TEXT)")
        conn.execute("INSERT INTO people VALUES ('C1', 'x@y.cn', 'Secret Name')")
    cfg = SourceConfig(
        url="sqlite:///{data_dir}/crm.sqlite", table="people", columns={"contact_id": "cid", "email": "mail"}
    )
    table = read_source("contacts", cfg, settings=settings)
    # full_name is never read, even though the table has it.
    assert list(table.frame.columns) == ["contact_id", "email"]
    assert table.frame.iloc[0].tolist() == ["C1", "x@y.cn"]


def test_gz_that_is_not_gzip_is_a_source_error(settings) -> None:
    path = settings.data_dir / "orders.csv.gz"
    path.write_text("order_id\n1\n")
    with pytest.raises(SourceError, match=r"cannot read .*orders\.csv\.gz"):
        read_source("orders", SourceConfig(path=str(path)), settings=settings)


@pytest.mark.parametrize("gz", [False, True])
def test_blank_separated_text_export(settings, gz: bool) -> None:
    # CDNOW's layout: a header, leading blanks, columns separated by runs of spaces, zero-padded ids.
    text = " customer_id  date number_of_cds  dollar_value\n 00001 19970101  1   11.77\n 00002 19970112  5   77.00\n"
    path = settings.data_dir / ("cd.txt.gz" if gz else "cd.txt")
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    cfg = SourceConfig(
        path=str(path),
        csv_sep="whitespace",
        customer_key="customer_id",
        columns={
            "customer_ref": "customer_id",
            "order_ts": "date",
            "quantity": "number_of_cds",
            "amount": "dollar_value",
            "order_id": None,
        },
    )
    table = read_source("orders", cfg, settings=settings)
    assert table.frame.to_dict("list") == {
        "customer_ref": ["00001", "00002"],  # text: the leading zeros are the business's id
        "order_ts": ["19970101", "19970112"],
        "amount": ["11.77", "77.00"],
        "quantity": ["1", "5"],
    }
    assert sorted(table.missing_optional) == ["category", "discount", "status"]


def test_an_optional_column_named_in_the_config_must_exist(settings) -> None:
    path = settings.data_dir / "orders.csv"
    path.write_text("id,who,when,total\n1,a@b.cn,2024-01-01,3\n")
    cfg = SourceConfig(
        path=str(path),
        columns={
            "order_id": "id",
            "customer_ref": "who",
            "order_ts": "when",
            "amount": "total",
            "discount": "rebate",
        },
    )
    with pytest.raises(
        SourceError,
        match=r"source 'orders' \(.*orders\.csv\): column 'rebate' \(sources\.orders\.columns\.discount\) not found; found: id, who, when, total",
    ):
        read_source("orders", cfg, settings=settings)

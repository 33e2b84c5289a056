"""Sources whose timestamps are not ISO 8601 declare `date_format`; without it they are not guessed."""

from __future__ import annotations

import pandas as pd
import pytest

from configs.settings import ConfigError
from core.errors import SourceError
from features.ingest import load_clean, run_ingest
from features.normalize import parse_timestamps
from tests.data.test_ingest_errors import orders_only, write_orders

US = [
    "O1,ann@example.com,03/04/2024 13:30,100,0,1,books,completed",
    "O2,13800138000,12/31/2023 08:00,20,0,1,toys,completed",
]


def test_us_dates_are_read_month_first_in_the_source_time_zone(data_dir) -> None:
    write_orders(data_dir, US)
    run_ingest(orders_only(data_dir, date_format="%m/%d/%Y %H:%M", timezone="America/New_York"))
    ts = load_clean(orders_only(data_dir), "orders").set_index("order_id")["order_ts"]
    assert ts["O1"] == pd.Timestamp("2024-03-04 18:30", tz="UTC")  # EST, UTC-5
    assert ts["O2"] == pd.Timestamp("2023-12-31 13:00", tz="UTC")


def test_undeclared_us_dates_are_not_guessed(data_dir) -> None:
    write_orders(data_dir, US)
    with pytest.raises(SourceError, match=r"column 'order_ts' cannot be read as timestamps"):
        run_ingest(orders_only(data_dir))


def test_a_declared_format_reads_only_that_format():
    out = parse_timestamps(pd.Series(["04.03.2024", "2024-03-04", None]), date_format="%d.%m.%Y")
    assert out.iloc[0] == pd.Timestamp("2024-03-04", tz="UTC")
    assert out.iloc[1:].isna().all()
    aware = parse_timestamps(pd.Series(["03/04/2024 10:00 +0800"]), date_format="%m/%d/%Y %H:%M %z")
    assert aware.iloc[0] == pd.Timestamp("2024-03-04 02:00", tz="UTC")


def test_a_format_without_day_or_year_is_a_config_error(data_dir) -> None:
    with pytest.raises(ConfigError, match=r"date_format"):
        orders_only(data_dir, date_format="%H:%M")

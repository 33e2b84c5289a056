"""DuckDB's memory: a third of the machine unless `duckdb.memory_limit` says otherwise (its own default,
80 %, let `features build` take 16 GB of 24 at a million customers before it spilled)."""

from __future__ import annotations

import re

import psutil

from configs.settings import load_settings
from features.engine import open_engine

UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def _limit_bytes(engine) -> float:
    text = engine.con.raw_sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    number, unit = re.fullmatch(r"([\d.]+) (\w+)", text).groups()
    return float(number) * UNITS[unit]


def test_without_a_limit_duckdb_gets_a_third_of_the_machine(tmp_path) -> None:
    with open_engine(load_settings(data_dir=str(tmp_path))) as engine:
        share = _limit_bytes(engine) / psutil.virtual_memory().total
    assert 0.32 < share < 0.34


def test_a_configured_limit_is_the_limit(tmp_path) -> None:
    settings = load_settings(data_dir=str(tmp_path), duckdb={"memory_limit": "700MB"})
    with open_engine(settings) as engine:
        assert abs(_limit_bytes(engine) - 700e6) < 0.02 * 700e6  # DuckDB shows it rounded, in MiB


def test_a_query_past_the_limit_spills_into_a_fresh_data_dir(tmp_path) -> None:
    data_dir = tmp_path / "fresh" / "data"  # nothing exists yet: spilling must still find its folder
    settings = load_settings(data_dir=str(data_dir), duckdb={"memory_limit": "64MB", "threads": 1})
    with open_engine(settings) as engine:
        rows = engine.con.raw_sql(
            "SELECT count(*), sum(k) FROM (SELECT k FROM (SELECT (i * 7919) % 10000019 AS k, "
            "repeat('x', 40) AS pad FROM range(4000000) t(i)) ORDER BY k, pad)"
        ).fetchall()
    assert rows == [(4_000_000, sum((i * 7919) % 10_000_019 for i in range(4_000_000)))]


def test_an_engine_that_never_spilled_leaves_no_folder_behind(tmp_path) -> None:
    data_dir = tmp_path / "untouched" / "data"
    with open_engine(load_settings(data_dir=str(data_dir))) as engine:
        assert engine.con.raw_sql("SELECT 42").fetchall() == [(42,)]
    assert not (tmp_path / "untouched").exists()  # a failed ingest must leave data_dir as it was

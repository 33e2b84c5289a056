"""bench/bench_scale.py's arithmetic and report: growth exponents, a stage that did not complete is named
with its reason, and a run stopped early is rebuilt from its printed lines."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench import bench_scale
from bench.bench_scale import Measure, exponent, report, rss_exponent


def test_exponents_between_sizes() -> None:
    small = Measure("ingest", 100_000, seconds=10.0, cpu_seconds=8.0, peak_rss_mb=1000.0)
    big = Measure("ingest", 1_000_000, seconds=100.0, cpu_seconds=80.0 * 10**0.5, peak_rss_mb=1000.0)
    assert exponent(small, big, "seconds") == pytest.approx(1.0)
    assert exponent(small, big) == pytest.approx(1.5)  # CPU time by default
    assert rss_exponent(small, big) == pytest.approx(0.0)  # memory flat in the customers
    failed = Measure("ingest", 1_000_000, status="memory", seconds=50.0, cpu_seconds=40.0)
    assert exponent(small, failed) is None and rss_exponent(small, failed) is None


def _meta() -> dict:
    return {
        "command": "x",
        "cores": 2,
        "memory_gb": 24.0,
        "load_start": 1.0,
        "load_end": 2.0,
        "started": "s",
        "ended": "e",
        "timeout": 100.0,
        "mem_limit_mb": 1000.0,
    }


def test_report_names_the_stage_that_stopped_and_why() -> None:
    results = [
        Measure("generate", 100, seconds=1.0, cpu_seconds=1.0, peak_rss_mb=10.0),
        Measure("generate", 300, seconds=3.0, cpu_seconds=3.0, peak_rss_mb=10.0),
        Measure("ingest", 100, seconds=2.0, cpu_seconds=2.0, peak_rss_mb=20.0),
        Measure("ingest", 300, status="memory", seconds=9.0, peak_rss_mb=1001.0, reason="over 1,000 MB"),
        Measure("features", 300, status="skipped", reason="ingest did not complete"),
    ]
    text = report(results, sizes=[100, 300], meta=_meta())
    assert "| generate | 1.0 / 1.0 / 10 | 3.0 / 3.0 / 10 | 1.00 | 1.00 | 0.00 |" in text
    assert "**memory**" in text and "- 300 customers, ingest: memory: over 1,000 MB" in text
    assert "300: 12 s end to end (3 CPU s) (incomplete), peak 1,001 MB" in text


def test_report_from_a_run_stopped_early(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bench_scale, "RESULTS", tmp_path)
    done = [asdict(Measure("generate", 100, seconds=1.0, cpu_seconds=1.0, peak_rss_mb=10.0))]
    (tmp_path / "scale.json").write_text(json.dumps({"meta": _meta(), "results": done}))
    log = tmp_path / "run.log"
    log.write_text(
        "      100 generate             ok            1.0 s      1.0 CPU s       10 MB load 1.0 \n"
        "      300 generate             ok            3.5 s      3.0 CPU s    1,010 MB load 2.5 \n"
        "  materialize sqlite-feast: ok\n"
    )
    assert bench_scale.report_from_files(str(log)) == 0
    text = (tmp_path / "scale.md").read_text()
    assert "| generate | 1.0 / 1.0 / 10 | 3.5 / 3.0 / 1,010 |" in text
    assert "300 customers: the run was stopped after the stages listed" in text

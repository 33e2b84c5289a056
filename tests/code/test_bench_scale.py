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


def test_scale_engine_names_the_results_file() -> None:
    assert bench_scale.scale_engine({}) == "duckdb"
    assert bench_scale.scale_engine({"SCALE_ENGINE": "spark"}) == "spark"
    assert bench_scale.results_stem("duckdb") == "scale"
    assert bench_scale.results_stem("spark") == "scale_spark"  # never overwrites scale.md
    with pytest.raises(bench_scale.BenchConfigError, match="SCALE_ENGINE: unknown engine 'polars'"):
        bench_scale.scale_engine({"SCALE_ENGINE": "polars"})


def test_unknown_engine_exits_2_before_running_anything(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(bench_scale, "RESULTS", tmp_path)
    monkeypatch.setenv("SCALE_ENGINE", "polars")
    monkeypatch.setenv("SCALE_DIR", str(tmp_path / "scale"))
    monkeypatch.setattr("sys.argv", ["bench_scale"])
    assert bench_scale.main() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "SCALE_ENGINE" in err
    assert not (tmp_path / "scale").exists() and not list(tmp_path.iterdir())


def test_reuse_merges_stages_of_earlier_runs_in_stage_order() -> None:
    earlier = [
        Measure("ingest", 100, seconds=1.0, engine="spark", extra={"jvm": True}),
        Measure("features", 100, status="failed", engine="spark", extra={"jvm": True}),
    ]
    latest = [Measure("features", 100, seconds=2.0, engine="spark"), Measure("retrain", 100, engine="spark")]
    merged = bench_scale.merge_results(earlier, latest)
    assert [(m.stage, m.status) for m in merged] == [("ingest", "ok"), ("features", "ok"), ("retrain", "ok")]
    text = report(merged, sizes=[100], meta={**_meta(), "engine": "spark"})
    assert "on local Spark" in text and "started a JVM (a Spark session): ingest." in text


def test_a_child_never_waited_for_has_its_cpu_polled() -> None:
    """The JVM's case: a process its parent does not wait for; its CPU time is read until it exits."""
    import subprocess
    import sys

    import psutil

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        cpu = bench_scale._jvm_final_cpu({psutil.Process(child.pid): 0.0}, wait=30.0)
    finally:
        child.wait()
    assert cpu >= 0.25


def test_kept_measures_are_named_by_the_run_that_measured_them() -> None:
    first = bench_scale.run_label({**_meta(), "command": "SCALE_SIZES=100", "started": "d1"})
    second = bench_scale.run_label(
        {**_meta(), "command": "SCALE_SIZES=1000 SCALE_STAGES=retrain", "started": "d2"}
    )
    this = bench_scale.run_label(_meta())
    earlier = [
        Measure("generate", 100, run=first),
        Measure("retrain", 100, run=first),
        Measure("retrain", 1000, run=second),
    ]
    merged = bench_scale.merge_results(earlier, [Measure("retrain", 100, run=this)])
    notes = bench_scale.kept_notes(merged, this)
    # each earlier run names only what the table still shows of it; the run itself is not a note
    assert notes == [
        "measured by an earlier run (SCALE_SIZES=100, from d1 UTC, 1-minute load 1.0 at its start): 100 generate",
        "measured by an earlier run (SCALE_SIZES=1000 SCALE_STAGES=retrain, from d2 UTC, 1-minute load 1.0 at its "
        "start): 1,000 retrain",
    ]


def test_a_stages_output_is_what_it_did_not_scores_distribution() -> None:
    printed = [
        "scored 1,000 customers of snapshot 2025-12-23",
        "tag changes queued for the CRM: 15,000 (1.0s)",
        "scores written to /x/scores/latest.parquet",
        "",
        "distribution of each tag over the customers scored:",
        "rfm_r",
        "  1    266   26.6%",
    ]
    assert bench_scale.stage_output(printed) == (
        "scored 1,000 customers of snapshot 2025-12-23 / tag changes queued for the CRM: 15,000 (1.0s) / "
        "scores written to /x/scores/latest.parquet"
    )
    assert bench_scale.stage_output(["a", "b", "c", "d"]) == "b / c / d"

"""Benchmark `persona features build`: 100k customers (about 2M orders, 6M events), 19 snapshots.

Generates and ingests the data once with the project's own generator and ingestion (cached under
`data/bench/features_<N>`), then builds the feature tables in a fresh child process per run, so each
run's peak RSS is its own. Writes `bench/results/features.md`.

    BENCH=features make bench                     # or: .venv/bin/python -m bench.bench_features
    PERSONA_BENCH_CUSTOMERS=20000 python -m bench.bench_features   # a quicker, smaller run
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "features.md"
RUNS = 3


def _settings(data_dir: Path):
    from configs.settings import load_settings

    # as_of pinned so ingestion (and so the benchmark) does not depend on the day it runs
    return load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})


def prepare(customers: int, data_dir: Path) -> dict:
    """Generate raw sources and ingest them once; later runs reuse `data_dir/clean`."""
    from features.ingest import run_ingest
    from features.synthetic.generate import generate

    settings = _settings(data_dir)
    marker = data_dir / "clean" / "ingest_report.json"
    if not marker.is_file():
        started = time.perf_counter()
        generate(
            settings.generator.model_copy(update={"customers": customers}), out=data_dir / "raw", force=True
        )
        run_ingest(settings)
        print(
            f"  generated and ingested {customers:,} customers in {time.perf_counter() - started:.0f}s",
            flush=True,
        )
    report = json.loads(marker.read_text(encoding="utf-8"))
    return report["tables"]


def child(data_dir: Path) -> None:
    """One build in this process; prints seconds, rows written and peak RSS as JSON."""
    import resource

    from features.build import build_features

    settings = _settings(data_dir)
    started = time.perf_counter()
    report = build_features(settings)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kib = usage.ru_maxrss  # KiB on Linux
    # CPU time of the whole process (imports and reading included): robust when the cores are shared
    cpu = usage.ru_utime + usage.ru_stime
    rows = {name: n for name, (_, n) in report.written.items()}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": rows,
                "snapshots": len(report.snapshots),
                "peak_rss_mib": peak_kib / 1024,
                "cpu_seconds": cpu,
            }
        )
    )


def main() -> int:
    customers = int(os.environ.get("PERSONA_BENCH_CUSTOMERS", "100000"))
    data_dir = ROOT / "data" / "bench" / f"features_{customers}"
    clean_rows = prepare(customers, data_dir)
    runs = []
    for i in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_features", "--child", str(data_dir)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(
            f"  run {i + 1}: {runs[-1]['seconds']:.1f}s wall, {runs[-1]['cpu_seconds']:.1f}s CPU, "
            f"peak RSS {runs[-1]['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    median_s = statistics.median(r["seconds"] for r in runs)
    median_cpu = statistics.median(r["cpu_seconds"] for r in runs)
    load = os.getloadavg()[0]
    peak = max(r["peak_rss_mib"] for r in runs)
    rows = runs[0]["rows"]
    spine_rows = rows["customer_transactions"]
    table_lines = "\n".join(f"| {name} | {n:,} |" for name, n in rows.items())
    section = f"""## Features (`persona features build`)

Command: `BENCH=features make bench` (`.venv/bin/python -m bench.bench_features`); data from
`features.synthetic` + `features.ingest` ({customers:,} generated customers), built {RUNS} times, each in a
fresh process. {os.cpu_count()} cores, shared: 1-minute load average {load:.1f} at the end, so wall
times are inflated when the load exceeds the cores; CPU time is the steadier figure.
{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

Input (clean): {clean_rows.get("customers", 0):,} customers, {clean_rows.get("orders", 0):,} orders,
{clean_rows.get("events", 0) or 0:,} events, {clean_rows.get("leads", 0) or 0:,} leads; {runs[0]["snapshots"]} snapshots.

| measure | value |
|---|---|
| build time, median of {RUNS} (s) | {median_s:.1f} |
| build times (s) | {", ".join(f"{r['seconds']:.1f}" for r in runs)} |
| CPU time of the build process (incl. imports and reads), median (s) | {median_cpu:.1f} |
| (customer, snapshot) rows per second | {spine_rows / median_s:,.0f} |
| source rows (orders + events + leads) per second | {((clean_rows.get("orders") or 0) + (clean_rows.get("events") or 0) + (clean_rows.get("leads") or 0)) / median_s:,.0f} |
| peak RSS of the build process, max of {RUNS} (MiB) | {peak:,.0f} |

| table | rows written |
|---|---|
{table_lines}
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(section, encoding="utf-8")
    print(section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())

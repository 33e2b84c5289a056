"""Benchmark `persona data generate`: 100k persons, median wall time of 3 runs, rows/s, peak RSS.

Each run is its own child process (so max RSS is that run's alone), writing to a temporary directory
that is removed afterwards. Run: `BENCH=generate make bench` or `python -m bench.bench_generate`
(`--customers N --runs K` to change the size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "generate.md"

_CHILD = r"""
import json, sys, time
from pathlib import Path
from configs.sections.generator import GeneratorConfig
from features.synthetic import generate

customers, seed, out, report = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
marks = []
def progress(stages):
    for stage in stages:
        marks.append((stage.__name__, time.perf_counter()))
        yield stage
started = time.perf_counter()
summary = generate(GeneratorConfig(customers=customers, seed=seed), out=out, progress=progress)
ended = time.perf_counter()
names = [m[0] for m in marks]
times = [m[1] for m in marks] + [ended]
sizes = {p.name: p.stat().st_size for p in out.rglob("*") if p.is_file()}
report.write_text(json.dumps({
    "seconds": ended - started,
    "rows": summary.rows,
    "stages": {n: times[i + 1] - times[i] for i, n in enumerate(names)},
    "bytes": sizes,
}))
"""


def run_once(customers: int, seed: int) -> dict:
    """One generation in a child process: its own wall time, rows, stage times, max RSS and CPU time."""
    work = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    try:
        report = work / "report.json"
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(customers), str(seed), str(work / "raw"), str(report)],
            cwd=ROOT,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise RuntimeError(f"generation failed with exit code {child.returncode}")
        result = json.loads(report.read_text())
        result["max_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    runs = []
    for i in range(args.runs):
        runs.append(run_once(args.customers, args.seed))
        print(
            f"run {i + 1}/{args.runs}: {runs[-1]['seconds']:.1f}s wall, {runs[-1]['cpu_seconds']:.1f}s cpu, "
            f"max RSS {runs[-1]['max_rss_mb']:.0f} MB",
            flush=True,
        )
    wall = statistics.median(r["seconds"] for r in runs)
    cpu = statistics.median(r["cpu_seconds"] for r in runs)
    rss = max(r["max_rss_mb"] for r in runs)
    rows = runs[0]["rows"]
    total_rows = sum(rows.values())
    stages = {name: statistics.median(r["stages"][name] for r in runs) for name in runs[0]["stages"]}
    sizes = runs[0]["bytes"]

    lines = [
        "## Synthetic data generation (`persona data generate`)",
        "",
        f"Command: `BENCH=generate make bench` (= `python -m bench.bench_generate --customers {args.customers} "
        f"--runs {args.runs}`). {args.customers:,} persons, seed {args.seed}, 2024-01-01..2025-12-31, each run "
        f"in its own process. {os.cpu_count()} cores, load average {load_before:.1f} at the start "
        f"(the machine is shared); measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| wall time, median of {args.runs} | {wall:.1f} s (runs: "
        + ", ".join(f"{r['seconds']:.1f}" for r in runs)
        + ") |",
        f"| CPU time (user+sys), median | {cpu:.1f} s |",
        f"| peak RSS (max over runs) | {rss:,.0f} MB |",
        f"| rows written, all sources | {total_rows:,} |",
        f"| rows/s (wall) | {total_rows / wall:,.0f} |",
        "",
        "| source | rows (incl. re-sent duplicates) | file | size |",
        "|---|---|---|---|",
    ]
    files = {
        "contacts": "crm.sqlite",
        "orders": "orders.csv.gz",
        "events": "events.csv.gz",
        "leads": "leads.csv",
    }
    for source, n in rows.items():
        lines.append(f"| {source} | {n:,} | {files[source]} | {sizes.get(files[source], 0) / 1e6:.1f} MB |")
    for name in ("person_map.parquet", "persons.parquet"):
        lines.append(f"| ground truth | - | {name} | {sizes.get(name, 0) / 1e6:.1f} MB |")
    lines += ["", "| stage | median s |", "|---|---|"]
    lines += [f"| {name} | {s:.1f} |" for name, s in stages.items()]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

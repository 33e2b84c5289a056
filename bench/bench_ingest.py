"""Ingest throughput and peak memory on the synthetic generator's data (default 100k persons).

`python -m bench.bench_ingest` (or `BENCH=ingest make bench`). The sources are generated once into
`data/bench/ingest_<N>/raw` and reused; each run is a fresh child process (so its peak RSS is its own)
that reads, validates, resolves and writes the clean tables, timing the three phases.
Env: `BENCH_INGEST_CUSTOMERS` (default 100000), `BENCH_INGEST_RUNS` (default 3).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ingest.md"
AS_OF = "2026-01-01T00:00:00Z"

CHILD = """
import json, resource, sys, time
from configs.settings import load_settings
from features.ingest import ingest_frames, read_sources, resolve_as_of, write_clean
settings = load_settings(data_dir=sys.argv[1])
t0 = time.perf_counter()
raw = read_sources(settings)
t1 = time.perf_counter()
result = ingest_frames(raw, sources=settings.sources, identity=settings.identity,
                       as_of=resolve_as_of(settings, sys.argv[2]))
t2 = time.perf_counter()
write_clean(result, settings)
t3 = time.perf_counter()
print(json.dumps({
    "read_s": t1 - t0, "process_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
    "rows": {n: r.read for n, r in result.sources.items()},
    "kept": {n: r.kept for n, r in result.sources.items()},
    "customers": len(result.tables["customers"]),
}))
"""


def ensure_data(customers: int) -> Path:
    """Generate the sources once (seed 42) and reuse them across runs."""
    data_dir = ROOT / "data" / "bench" / f"ingest_{customers}"
    if not (data_dir / "raw" / "ground_truth" / "person_map.parquet").is_file():
        print(f"generating {customers:,} persons into {data_dir / 'raw'} (once)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "persona.cli", "data", "generate", "--customers", str(customers),
             "--seed", "42", "--out", str(data_dir / "raw"), "--force"],
            cwd=ROOT, check=True, env={**os.environ, "PERSONA_DATA_DIR": str(data_dir)},
        )  # fmt: skip
    return data_dir


def run_once(data_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), AS_OF],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    customers = int(os.environ.get("BENCH_INGEST_CUSTOMERS", "100000"))
    runs = int(os.environ.get("BENCH_INGEST_RUNS", "3"))
    data_dir = ensure_data(customers)
    results = []
    load = os.getloadavg()[0]
    for i in range(runs):
        results.append(run_once(data_dir))
        print(
            f"  run {i + 1}/{runs}: {results[-1]['total_s']:.1f}s, peak {results[-1]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    med = {
        k: statistics.median(r[k] for r in results)
        for k in ("read_s", "process_s", "write_s", "total_s", "cpu_s")
    }
    peak = max(r["peak_rss_mb"] for r in results)
    rows = results[0]["rows"]
    total_rows = sum(rows.values())
    lines = [
        "## Ingest (`persona ingest`)",
        "",
        f"Command: `BENCH=ingest make bench` (`python -m bench.bench_ingest`), {runs} runs in fresh processes, "
        f"{os.cpu_count()} cores shared with other work (1-min load average {load:.1f} at the start: wall "
        f"times are inflated by contention, CPU time is the better guide), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Data: "
        f"`persona data generate --customers {customers} --seed 42`; as_of {AS_OF}.",
        "",
        "| source | rows read | rows kept |",
        "|---|---:|---:|",
        *[f"| {n} | {rows[n]:,} | {results[0]['kept'][n]:,} |" for n in rows],
        f"| **all** | **{total_rows:,}** | |",
        "",
        "| measure | median | min | max |",
        "|---|---:|---:|---:|",
        *[
            f"| {label} | {med[k]:.1f} s | {min(r[k] for r in results):.1f} s | {max(r[k] for r in results):.1f} s |"
            for k, label in (("read_s", "read sources"), ("process_s", "validate + resolve + shape"),
                             ("write_s", "write clean/ (parquet)"), ("total_s", "**total (wall)**"),
                             ("cpu_s", "CPU time (user + sys)"))
        ],
        f"| throughput (wall) | {total_rows / med['total_s']:,.0f} rows/s | | |",
        f"| peak RSS (max of runs) | {peak:,.0f} MB | | |",
        "",
        f"Customers resolved: {results[0]['customers']:,}.",
    ]  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

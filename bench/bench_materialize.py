"""Feast materialization at a million customers: `features/materialize.py` into SQLite and into Redis.

`BENCH=materialize make bench` (or `python -m bench.bench_materialize`) writes
bench/results/materialize.md. Random feature tables of the contract's shape
(`tests/feast_support.synthetic_tables`: 4 views, 35 features, one snapshot per customer) for
BENCH_MAT_CUSTOMERS customers (default 1,000,000), kept in data/bench/materialize/<n>/ between runs.
Each online store is filled from empty by `persona features materialize --full` as the CLI runs it
(`feast_io.materialize`), in its own child process so its wall time, CPU time and peak RSS are its own.
Redis: a throw-away `redis-server` on BENCH_MAT_REDIS_PORT (default 18510), no persistence.
BENCH_MAT_STORES: which stores, in order (default `redis,sqlite`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "materialize.md"
SNAPSHOT = "2025-12-01"
END = datetime(2025, 12, 10, tzinfo=UTC)


def _settings(data_dir: Path, store: str, redis_url: str | None = None):
    from configs.settings import load_settings

    if store == "redis":
        return load_settings(
            data_dir=str(data_dir),
            feast={
                "online_store": "redis",
                "redis_connection_string": redis_url,
                "registry": "{data_dir}/feast/registry_redis.db",
            },
        )
    return load_settings(data_dir=str(data_dir))


def child(store: str, data_dir: Path, redis_url: str | None) -> int:
    """One timed materialization (imports and apply excluded); prints one JSON line."""
    from features import feast_io

    settings = _settings(data_dir, store, redis_url)
    feast_io.apply_repo(settings)
    cpu = time.process_time()
    stats = feast_io.materialize(settings, end=END, full=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "rows": stats.rows_written,
                "per_view": stats.per_view,
                "seconds": stats.seconds,
                "cpu_seconds": time.process_time() - cpu,
                "peak_rss_mb": usage.ru_maxrss / 1024,
            }
        ),
        flush=True,
    )
    return 0


def _tables(customers: int) -> Path:
    """The feature tables of `customers` random customers (written once, then reused)."""
    from tests.feast_support import TABLES, synthetic_tables, write_tables

    data_dir = ROOT / "data" / "bench" / "materialize" / str(customers)
    features = data_dir / "features"
    done = features / "DONE"
    if not done.is_file():
        started = time.perf_counter()
        tables = synthetic_tables(customers=customers, snapshots=[SNAPSHOT], seed=7)
        write_tables(features, tables)
        del tables
        done.write_text(f"{customers}\n", encoding="utf-8")
        print(f"  tables written in {time.perf_counter() - started:.0f} s", flush=True)
    assert all((features / f"{t}.parquet").is_file() for t in TABLES)
    return data_dir


def _redis(port: int, workdir: Path) -> subprocess.Popen:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not installed (`make services`)")
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(200):
        try:
            client.ping()
            return process
        except redis.exceptions.ConnectionError:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} did not start (port taken?)") from None
            time.sleep(0.05)
    process.terminate()
    raise RuntimeError(f"redis-server on port {port} did not answer")


def _run_child(store: str, data_dir: Path, redis_url: str | None) -> dict:
    command = [sys.executable, "-m", "bench.bench_materialize", "--child", store, str(data_dir)]
    if redis_url:
        command.append(redis_url)
    started = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"materialize {store} failed: {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["child_wall"] = time.perf_counter() - started
    result["load"] = os.getloadavg()
    return result


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        store, data_dir = sys.argv[2], Path(sys.argv[3])
        return child(store, data_dir, sys.argv[4] if len(sys.argv) > 4 else None)
    os.environ.setdefault("TQDM_DISABLE", "1")
    customers = int(os.environ.get("BENCH_MAT_CUSTOMERS", "1000000"))
    port = int(os.environ.get("BENCH_MAT_REDIS_PORT", "18510"))
    print(f"bench_materialize: {customers:,} customers", flush=True)
    data_dir = _tables(customers)
    shutil.rmtree(data_dir / "feast", ignore_errors=True)  # online stores and registries from empty
    load_before = os.getloadavg()
    stores = os.environ.get("BENCH_MAT_STORES", "redis,sqlite").split(",")
    runs = {}
    if "redis" in stores:
        server = _redis(port, data_dir / "redis")
        try:
            import redis

            runs["redis"] = _run_child("redis", data_dir, f"127.0.0.1:{port}")
            info = redis.Redis(host="127.0.0.1", port=port).info("memory")
            runs["redis"]["size_mb"] = info["used_memory"] / 2**20
            print(f"  redis: {runs['redis']}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if "sqlite" in stores:
        runs["sqlite"] = _run_child("sqlite", data_dir, None)
        runs["sqlite"]["size_mb"] = (data_dir / "feast" / "online_store.db").stat().st_size / 2**20
        print(f"  sqlite: {runs['sqlite']}", flush=True)

    lines = [
        "## Feast materialization at a million customers (`bench_materialize`)",
        "",
        f"Command: `BENCH=materialize make bench` (`BENCH_MAT_CUSTOMERS={customers} .venv/bin/python -m "
        "bench.bench_materialize`). Random feature tables of the contract's shape "
        f"(`tests/feast_support.synthetic_tables`: 4 views, 35 features, {customers:,} customers, one "
        "snapshot each), written to an empty online store by `feast_io.materialize(full=True)` (what "
        "`persona features materialize --full` runs: `features/materialize.py`, batches of "
        "20,000 customers), each store in its own child process; times exclude imports and apply. "
        f"Redis: a local `redis-server`, no persistence. {os.cpu_count()} cores shared with other work; "
        f"load average (1/5/15 min) before {' / '.join(f'{x:.2f}' for x in load_before)}; "
        f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| online store | entity rows | wall s | rows/s | CPU s | peak RSS MB | store size MB "
        "| load after (1/5/15) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for store, run in runs.items():
        size = run["size_mb"]
        lines.append(
            f"| {store} | {run['rows']:,} | {run['seconds']:.1f} | {run['rows'] / run['seconds']:,.0f} "
            f"| {run['cpu_seconds']:.1f} | {run['peak_rss_mb']:,.0f} | {size:,.0f} "
            f"| {' / '.join(f'{x:.2f}' for x in run['load'])} |"
        )
    lines += [
        "",
        "Entity rows: one per customer and view (4 views). Store size: the SQLite file, or Redis' "
        "`used_memory` after the run.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"bench_materialize: wrote {RESULTS}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

"""Feast figures: online read latency (SQLite vs Redis), materialization rate, historical retrieval time.

`BENCH=feast make bench` (or `python -m bench.bench_feast`) writes bench/results/feast.md. Synthetic
feature tables of the contract's shape (tests/feast_support.py); size with BENCH_FEAST_CUSTOMERS
(default 100,000 customers x 3 snapshots per table).
"""

from __future__ import annotations

import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "feast.md"
SNAPSHOTS = ["2025-10-03", "2025-11-02", "2025-12-02"]
END = datetime(2025, 12, 10, tzinfo=UTC)
SERVICE = "churn_v1"  # the widest service: 27 features from two views


def _interleaved_ms(
    calls: dict[str, Callable[[], object]], *, runs: int, warmup: int = 20
) -> dict[str, list[float]]:
    """Time each call `runs` times, alternating between them so that load on a shared machine hits all
    paths alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    out: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(runs):
        for label, call in calls.items():
            started = time.perf_counter()
            call()
            out[label].append((time.perf_counter() - started) * 1000)
    return out


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def _online_rows(store_name: str, settings, ids: list[str], rng: random.Random) -> list[dict]:
    from features import feast_io

    store = feast_io.get_store(settings)
    fs = store.get_feature_service(SERVICE)
    # As `persona serve` does once loaded: long-lived objects out of the collector's sight, else a
    # full collection during a 1,000-customer read (tens of thousands of protos) adds ~100 ms to it.
    gc.collect()
    gc.freeze()
    rows = []
    for batch, runs in ((1, 2000), (100, 300), (1000, 40)):

        def ours(batch: int = batch) -> object:
            return feast_io.online_features(
                store, customer_ids=rng.sample(ids, batch), service=SERVICE, as_of=END
            )

        def raw(batch: int = batch) -> object:
            return store.get_online_features(features=fs, entity_rows={"customer_id": rng.sample(ids, batch)})

        timings = _interleaved_ms(
            {"feast_io.online_features": ours, "raw store.get_online_features": raw}, runs=runs
        )
        for label, times in timings.items():
            rows.append(
                {
                    "online store": store_name,
                    "customers per call": batch,
                    "path": label,
                    "calls": runs,
                    "median ms": statistics.median(times),
                    "p99 ms": _p99(times),
                }
            )
            print(
                f"  online {store_name} x{batch} {label}: median {statistics.median(times):.2f} ms",
                flush=True,
            )
    gc.unfreeze()  # frozen objects are never freed at exit: native libraries then report leaks
    return rows


def main() -> int:
    from configs.settings import load_settings
    from features import feast_io
    from tests.feast_support import redis_server, synthetic_tables, write_tables

    os.environ.setdefault("TQDM_DISABLE", "1")
    customers = int(os.environ.get("BENCH_FEAST_CUSTOMERS", "100000"))
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench_feast_") as tmp:
        work = Path(tmp)
        settings = load_settings(data_dir=str(work / "data"))
        tables = synthetic_tables(customers=customers, snapshots=SNAPSHOTS, seed=7)
        write_tables(settings.path(settings.feast.source_dir), tables)
        table_rows = len(next(iter(tables.values())))
        ids = list(tables["customer_transactions"]["customer_id"].unique())
        del tables
        print(f"bench_feast: {customers:,} customers, {table_rows:,} rows per table", flush=True)

        started = time.perf_counter()
        feast_io.apply_repo(settings)
        apply_s = time.perf_counter() - started

        # Historical retrieval: 100k entity rows, random customers and times over the snapshot range.
        n_entity = 100_000
        span = (pd.Timestamp(SNAPSHOTS[-1], tz="UTC") - pd.Timestamp(SNAPSHOTS[0], tz="UTC")).total_seconds()
        entity = pd.DataFrame(
            {
                "customer_id": [rng.choice(ids) for _ in range(n_entity)],
                "event_timestamp": [
                    pd.Timestamp(SNAPSHOTS[0], tz="UTC") + pd.Timedelta(seconds=rng.uniform(-5e6, span + 5e6))
                    for _ in range(n_entity)
                ],
                "label": [rng.randint(0, 1) for _ in range(n_entity)],
            }
        )
        store = feast_io.get_store(settings)
        historical = []
        for _ in range(3):
            started = time.perf_counter()
            frame = feast_io.training_frame(store, entity_df=entity, service=SERVICE)
            historical.append(time.perf_counter() - started)
            assert len(frame) == n_entity
        print(f"  historical: median {statistics.median(historical):.1f} s", flush=True)

        materialized = []
        online = []
        stats = feast_io.materialize(settings, end=END)
        materialized.append(("sqlite", stats))
        print(f"  materialize sqlite: {stats.rows_written:,} rows in {stats.seconds:.1f} s", flush=True)
        online += _online_rows("sqlite", settings, ids, rng)
        try:
            with redis_server(work / "redis") as url:
                # Own registry: its materialization state starts afresh for the new online store.
                redis_settings = load_settings(
                    data_dir=str(work / "data"),
                    feast={
                        "online_store": "redis",
                        "redis_connection_string": url,
                        "registry": "{data_dir}/feast/registry_redis.db",
                    },
                )
                feast_io.apply_repo(redis_settings)
                stats = feast_io.materialize(redis_settings, end=END)
                materialized.append(("redis", stats))
                print(
                    f"  materialize redis: {stats.rows_written:,} rows in {stats.seconds:.1f} s", flush=True
                )
                online += _online_rows("redis", redis_settings, ids, rng)
        except FileNotFoundError as exc:
            print(f"  redis skipped: {exc}", flush=True)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        "## Feast (feature store)",
        "",
        "Command: `BENCH=feast make bench` (`python -m bench.bench_feast`). "
        f"Synthetic feature tables: {customers:,} customers x {len(SNAPSHOTS)} snapshots "
        f"({table_rows:,} rows per table, 4 tables). Service `{SERVICE}` (27 features, 2 views). "
        f"{os.cpu_count()} cores shared with other work; in process; "
        f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "Online reads (random customers per call, after warm-up and `gc.freeze()` as in the service; the two "
        "paths alternate call by call). `feast_io.online_features` reads each view with the provider's "
        "`online_read` and decodes it into numpy columns with found/unknown ids and staleness; the raw "
        "path is `store.get_online_features`, which also builds Feast's response proto:",
        "",
        "| online store | customers per call | path | calls | median ms | p99 ms |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in online:
        lines.append(
            f"| {row['online store']} | {row['customers per call']} | {row['path']} | {row['calls']} "
            f"| {row['median ms']:.2f} | {row['p99 ms']:.2f} |"
        )
    lines += ["", "| operation | figure |", "|---|---|", f"| apply_repo | {apply_s:.1f} s |"]
    for name, stats in materialized:
        rate = stats.rows_written / stats.seconds if stats.seconds else float("nan")
        lines.append(
            f"| materialize into {name} (first run, 4 views) | {stats.rows_written:,} rows in "
            f"{stats.seconds:.1f} s = {rate:,.0f} rows/s (1 run) |"
        )
    lines.append(
        f"| historical retrieval, {n_entity:,} entity rows (`training_frame`, DuckDB) | median "
        f"{statistics.median(historical):.1f} s of {len(historical)} runs "
        f"({', '.join(f'{t:.1f}' for t in historical)}) |"
    )
    lines.append(f"| peak RSS of the benchmark process | {peak_mb:,.0f} MB |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"bench_feast: wrote {RESULTS}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

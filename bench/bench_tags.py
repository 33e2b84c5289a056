"""Tag engine and tag store figures: `BENCH=tags make bench` (or `python -m bench.bench_tags`).

- batch: the whole catalog (configs/tags.yaml) over N customers (default 1,000,000), evaluate +
  format to CRM strings; median of 3 runs, tags per second, peak RSS of the process doing it;
- online: one customer at a time through `Catalog.evaluate_one`; median and p99 of 2,000 calls;
- store: `TagStore.apply` on SQLite for N customers x 1 tag: first write (every value a change),
  re-apply unchanged (change detection only), re-apply with 1% changed; and detection for N x 15 tags.

Each part runs in its own process so its peak memory is its own. Writes bench/results/tags.md.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tags.md"
N = int(os.environ.get("BENCH_TAGS_N", "1000000"))


def _catalog():
    from artifacts.catalog import read_catalog

    return read_catalog(ROOT / "configs" / "tags.yaml")


def synthetic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Features + model outputs with realistic shapes and ~5-10% nulls (customers without a row)."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(120, n)
    recency[rng.random(n) < 0.08] = np.nan
    frame = pd.DataFrame(
        {
            "customer_id": np.char.add("P", np.char.zfill(np.arange(n).astype(str), 12)),
            "recency_days": recency,
            "frequency_365d": rng.poisson(3, n),
            "monetary_365d": rng.gamma(2.0, 300.0, n),
            "orders_lifetime": rng.poisson(6, n),
            "tenure_days": rng.integers(0, 1500, n),
            "discount_rate_365d": rng.beta(1, 5, n),
            "return_rate_365d": rng.beta(1, 8, n),
            "complaints_90d": rng.poisson(0.2, n),
            "support_tickets_90d": rng.poisson(0.5, n),
            "visits_90d": np.where(rng.random(n) < 0.1, np.nan, rng.poisson(4, n)),
            "email_opens_90d": rng.poisson(2, n),
            "segment_id": rng.integers(0, 6, n),
            "persona": rng.choice(["high_value_loyal", "potential", "new", "at_risk", "hibernating"], n),
            "churn_probability": rng.random(n),
            "churn_tier": rng.choice(["high", "medium", "low"], n),
            "conversion_probability": rng.random(n),
            "conversion_tier": rng.choice(["hot", "warm", "cold"], n),
            "clv_value": rng.gamma(0.5, 200, n),
            "clv_tier": rng.choice(["top", "high", "standard"], n),
            "uplift_score": rng.normal(0, 0.05, n),
            "uplift_group": rng.choice(["persuadable", "sure_thing", "lost_cause", "do_not_disturb"], n),
            "next_best": rng.choice(["books", "toys", "home"], n),
            "next_best_list": rng.choice(["books, toys, home", "toys, home, books"], n),
        }
    )
    return frame


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def part_batch() -> dict:
    from models.tag_engine import fit_cutpoints, format_values

    catalog = _catalog()
    frame = synthetic_frame(N)
    cut = fit_cutpoints(catalog, frame)
    base_rss = _rss_mb()
    times, eval_times = [], []
    for _ in range(3):
        start = time.perf_counter()
        tags = catalog.evaluate(frame, cut)
        mid = time.perf_counter()
        shown = format_values(tags, catalog)
        times.append(time.perf_counter() - start)
        eval_times.append(mid - start)
        del tags, shown
    median = statistics.median(times)
    # memory the tagging itself allocates (numpy and pandas buffers included), on a separate untimed run
    import tracemalloc

    tracemalloc.start()
    shown = format_values(catalog.evaluate(frame, cut), catalog)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del shown
    return {
        "traced_peak_mb": traced_peak / 2**20,
        "customers": N,
        "tags": len(catalog.tags),
        "median_s": median,
        "eval_median_s": statistics.median(eval_times),
        "tags_per_s": N * len(catalog.tags) / median,
        "customers_per_s": N / median,
        "peak_rss_mb": _rss_mb(),
        "rss_before_mb": base_rss,
    }


def part_online() -> dict:
    from models.tag_engine import fit_cutpoints

    catalog = _catalog()
    frame = synthetic_frame(20_000, seed=1)
    cut = fit_cutpoints(catalog, frame)
    rows = frame.head(2_000).to_dict(orient="records")
    for row in rows[:200]:  # warm-up (compiles and caches the evaluators)
        catalog.evaluate_one(row, cut)
    lat = []
    for row in rows:
        start = time.perf_counter()
        catalog.evaluate_one(row, cut)
        lat.append(time.perf_counter() - start)
    lat_ms = np.array(lat) * 1000
    return {
        "calls": len(rows),
        "median_ms": float(np.median(lat_ms)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "customers_per_s": 1000.0 / float(np.median(lat_ms)),
    }


def part_store() -> dict:
    import sqlalchemy as sa

    from models.tag_engine import fit_cutpoints, format_values
    from serving.outbox import make_state_engine
    from serving.tag_store import TagStore

    catalog = _catalog()
    frame = synthetic_frame(N, seed=2)
    tags = format_values(catalog.evaluate(frame, fit_cutpoints(catalog, frame)), catalog)
    tags.insert(0, "customer_id", frame["customer_id"].to_numpy())
    one = tags[["customer_id", "lifecycle_stage"]]
    inputs = frame[["customer_id", "orders_lifetime", "recency_days", "tenure_days"]]
    produced = catalog.produced_by({})
    out: dict = {"customers": N}
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_state_engine(f"sqlite:///{tmp}/state.sqlite")
        store = TagStore.from_catalog(engine, catalog)
        store.create_schema()
        at = datetime(2026, 1, 1, tzinfo=UTC)

        def timed(batch, inp) -> tuple[float, int]:
            start = time.perf_counter()
            with engine.begin() as conn:
                changes = store.apply(conn, tags=batch, produced_by=produced, inputs=inp, at=at)
            return time.perf_counter() - start, len(changes)

        out["first_write_s"], out["first_write_changes"] = timed(one, inputs)
        runs = [timed(one, inputs) for _ in range(3)]
        out["unchanged_s"] = statistics.median(r[0] for r in runs)
        assert all(r[1] == 0 for r in runs)
        flipped = one.copy()
        rng = np.random.default_rng(5)
        idx = rng.choice(len(flipped), size=len(flipped) // 100, replace=False)
        col = flipped["lifecycle_stage"].to_numpy(copy=True)
        col[idx] = np.where(col[idx] == "churned", "active", "churned")
        flipped["lifecycle_stage"] = col
        out["one_pct_s"], out["one_pct_changes"] = timed(flipped, inputs)

        # N x every tag: seed tag_current directly (the history of a first write is not the point here),
        # then time change detection of the whole catalog with nothing changed.
        long = tags.melt(id_vars="customer_id", var_name="tag", value_name="value")
        long = long[long["tag"] != "lifecycle_stage"]
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_tag_current_customer")
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.executemany(
                "INSERT INTO tag_current (tag, customer_id, value, produced_by, inputs, updated_at) "
                "VALUES (?, ?, ?, 'seed', '{}', '2026-01-01 00:00:00')",
                zip(long["tag"].tolist(), long["customer_id"].tolist(), long["value"].tolist(), strict=True),
            )
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE INDEX ix_tag_current_customer ON tag_current (customer_id)"))
            out["rows_current"] = conn.execute(sa.text("SELECT count(*) FROM tag_current")).scalar_one()
        tags["lifecycle_stage"] = flipped["lifecycle_stage"].to_numpy()  # as stored by the 1% run
        out["all_tags_unchanged_s"], changed = timed(tags, frame)
        assert changed == 0, changed
    out["peak_rss_mb"] = _rss_mb()
    return out


def _run_part(name: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_tags", "--part", name], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bench_tags: part {name} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--part":
        print(json.dumps({"batch": part_batch, "online": part_online, "store": part_store}[sys.argv[2]]()))
        return 0
    load_before = os.getloadavg()[0]
    batch = _run_part("batch")
    print(f"batch: {batch}", flush=True)
    online = _run_part("online")
    print(f"online: {online}", flush=True)
    store = _run_part("store")
    print(f"store: {store}", flush=True)
    n = f"{batch['customers']:,}"
    lines = [
        "## Tags (`bench/bench_tags.py`)",
        "",
        f"Command: `BENCH=tags make bench` (= `python -m bench.bench_tags`; `BENCH_TAGS_N` sets N). "
        f"Catalog `configs/tags.yaml`, {batch['tags']} tags; synthetic features + model outputs; "
        f"{os.cpu_count()} cores, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other work on the machine "
        "inflates every time).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| batch: {n} customers, evaluate + format (median of 3) | {batch['median_s']:.2f} s "
        f"(evaluate alone {batch['eval_median_s']:.2f} s) |",
        f"| batch: tags per second | {batch['tags_per_s']:,.0f} ({batch['customers_per_s']:,.0f} customers/s) |",
        f"| batch: peak memory allocated by tagging (tracemalloc, untimed run) | {batch['traced_peak_mb']:,.0f} MB |",
        f"| batch: peak RSS of the process (after building the input frame: {batch['rss_before_mb']:,.0f} MB) | "
        f"{batch['peak_rss_mb']:,.0f} MB |",
        f"| online: one customer, all tags (`evaluate_one`, {online['calls']:,} calls) | median "
        f"{online['median_ms']:.3f} ms, p99 {online['p99_ms']:.3f} ms |",
        f"| store (SQLite): first write {n} customers x 1 tag ({store['first_write_changes']:,} changes) | "
        f"{store['first_write_s']:.1f} s |",
        f"| store: re-apply {n} x 1 tag unchanged (change detection only, median of 3) | {store['unchanged_s']:.2f} s |",
        f"| store: re-apply {n} x 1 tag, 1% changed ({store['one_pct_changes']:,} changes written) | "
        f"{store['one_pct_s']:.2f} s |",
        f"| store: re-apply {n} x {batch['tags']} tags unchanged ({store['rows_current']:,} current rows) | "
        f"{store['all_tags_unchanged_s']:.1f} s |",
        f"| store: peak RSS | {store['peak_rss_mb']:,.0f} MB |",
        "",
        "Aim: 1M customers tagged in under 10 s (batch row).",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

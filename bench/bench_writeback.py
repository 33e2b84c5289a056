"""Benchmark CRM write-back: outbox enqueue rate, and delivery rate to the sql connector (SQLite CRM)
and to the fake HubSpot CRM (local HTTP, batches of 100), for 100k tag changes.

Each measurement runs in a fresh child process with fresh databases (median of RUNS runs; peak RSS is
the child's max resident set). Writes `bench/results/writeback.md`.

    BENCH=writeback make bench                    # or: .venv/bin/python -m bench.bench_writeback
    PERSONA_BENCH_CHANGES=20000 python -m bench.bench_writeback   # a quicker, smaller run
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "writeback.md"
RUNS = 3
KINDS = ("enqueue", "sql", "http")


def _changes(n: int) -> list:
    from serving.changes import TagChange

    at = datetime(2026, 1, 5, tzinfo=UTC)
    values = ("high", "medium", "low")
    return [
        TagChange(
            customer_id=f"P{i:012x}",
            tag="churn_risk",
            crm_field="persona_churn_risk",
            old_value=None,
            new_value=values[i % 3],
            changed_at=at,
            produced_by="model:persona-churn@3",
            inputs={"churn_probability": round((i % 100) / 100, 2), "recency_days": i % 365},
        )
        for i in range(n)
    ]


def child(kind: str, n: int, workdir: Path) -> dict:
    """One measurement in this process: seconds for the timed part, and the peak RSS."""
    import random
    import resource

    from serving.outbox import Outbox, make_state_engine

    box = Outbox(make_state_engine(f"sqlite:///{workdir}/state.sqlite"))
    box.create_schema()
    changes = _changes(n)
    started = time.perf_counter()
    # scoring enqueues per chunk of customers: one transaction per 1,000 changes
    for start in range(0, n, 1000):
        with box.engine.begin() as conn:
            box.enqueue(conn, changes[start : start + 1000])
    enqueue_s = time.perf_counter() - started
    out = {"seconds": enqueue_s, "items": n}
    if kind != "enqueue":
        from serving.dispatcher import Dispatcher
        from serving.record_keys import RecordKeys

        fake = None
        if kind == "sql":
            from serving.connectors.sql import SqlConnector

            connector = SqlConnector(
                make_state_engine(f"sqlite:///{workdir}/crm.sqlite"), resolver=RecordKeys(None)
            )
            batch = 1000
        else:
            sys.path.insert(0, str(ROOT))
            from serving.connectors.http import HttpConnector
            from tests.fakes.hubspot import FakeHubSpot

            fake = FakeHubSpot(token="bench").start()
            connector = HttpConnector(
                fake.url, token="bench", id_property="persona_customer_id", resolver=RecordKeys(None)
            )
            batch = 100
        dispatcher = Dispatcher(box, connector, batch_size=batch, rng=random.Random(0))
        started = time.perf_counter()
        stats = dispatcher.run_until_empty()
        out["seconds"] = time.perf_counter() - started
        assert stats.delivered == n, stats
        if fake is not None:
            assert len(fake.applied) == n
            fake.stop()
        out["batch"] = batch
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    n = int(os.environ.get("PERSONA_BENCH_CHANGES", "100000"))
    rows = []
    for kind in KINDS:
        runs = []
        for run in range(RUNS):
            with tempfile.TemporaryDirectory(prefix="persona-bench-wb-") as tmp:
                proc = subprocess.run(
                    [sys.executable, "-m", "bench.bench_writeback", "--child", kind, str(n), tmp],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                )
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return 1
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.append(result)
            print(f"  {kind} run {run + 1}: {n / result['seconds']:,.0f} changes/s", flush=True)
        seconds = statistics.median(r["seconds"] for r in runs)
        rows.append(
            {
                "kind": kind,
                "seconds": seconds,
                "rate": n / seconds,
                "rss": statistics.median(r["peak_rss_mb"] for r in runs),
                "batch": runs[0].get("batch"),
            }
        )
    label = {
        "enqueue": "outbox enqueue (SQLite state DB, 1 transaction per 1,000 changes)",
        "sql": "delivery to the sql connector (SQLite CRM), batches of {batch}",
        "http": "delivery to the fake HubSpot CRM over local HTTP, batches of {batch}",
    }
    lines = [
        "## CRM write-back (outbox and dispatcher)",
        "",
        f"{n:,} tag changes; median of {RUNS} runs, each in a fresh child process with fresh databases; "
        f"{os.cpu_count()} cores shared with other work. Command: `BENCH=writeback make bench` "
        "(`.venv/bin/python -m bench.bench_writeback`).",
        "",
        "| what | median seconds | changes/s | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {label[row['kind']].format(batch=row['batch'])} | {row['seconds']:.2f} | "
            f"{row['rate']:,.0f} | {row['rss']:.0f} |"
        )
    lines += [
        "",
        "The delivery rows time the dispatcher only (claim with lease, send, settle), after the enqueue. "
        "The fake CRM runs in the same process (threads share the GIL), so the HTTP figure is a lower "
        "bound on the client side; a real HubSpot account is limited by its rate limits long before.",
        "",
        f"_Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())

"""Benchmark `persona refresh` (issue 16) in two parts; each writes its own result file.

- `refresh`: a generated world of N customers (default 100,000) is built once (generate, ingest, features,
  train, tags fit, a first refresh that tags everyone and delivers it to the SQL CRM); then about 1 % new
  orders (`persona data generate --continue --days D`) and a second `persona refresh`, timed per stage:
  the figure the issue asks for. Writes `bench/results/refresh.md`.
- `storm`: N customers (default 100,000) in the tag store; 10 % change `churn_risk` to `high` at once; a
  trigger rule (a CRM task + a list membership per firing) fires for each, through the trigger outbox, to
  the HubSpot-contract fake under a rolling rate limit (100 requests per 10 s, HubSpot's burst limit of a
  private app). Counts fired, delivered, tasks created per change id and list members: none lost, none
  twice. Writes `bench/results/refresh_storm.md`.

- `cdnow`: the ingest step of a refresh on CDNOW's real purchase file (configs/datasets/cdnow.yaml, cursor
  `order_ts`): day 1 = purchases up to 1998-06-15, day 2 = the whole file (the later purchases appended);
  the day-2 incremental ingest against a full ingest of day 2, alternated, medians of 3 rounds. Writes
  `bench/results/refresh_cdnow.md`.

    BENCH=refresh make bench                             # every part, 100,000 customers
    .venv/bin/python -m bench.bench_refresh --part storm --customers 100000
    .venv/bin/python -m bench.bench_refresh --part refresh --customers 20000
    .venv/bin/python -m bench.bench_refresh --part cdnow
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


# ------------------------------------------------------------------------------------------- storm
def storm(customers: int, *, share: float = 0.10, limit_max: int = 100, interval_ms: int = 10_000) -> str:
    import httpx
    import pandas as pd

    from configs.sections.triggers import TriggerRule
    from serving.connectors.activities import HubSpotActivitiesConnector, marker
    from serving.connectors.hubspot_lists import HubSpotListsConnector
    from serving.dispatcher import Dispatcher
    from serving.outbox import make_state_engine
    from serving.tag_store import TagStore
    from serving.triggers import TriggerConnector, fire, render, trigger_outbox
    from tests.fakes.hubspot import FakeHubSpot

    class Keys:
        record_key = "orders"

        def records_for(self, ids):  # type: ignore[no-untyped-def]
            return {i: [f"K{i}"] for i in ids}

    rule = TriggerRule(
        name="churn_alert",
        tag="churn_risk",
        becomes="high",
        crm_task={"subject": "Call {customer_id}: churn risk {new_value}", "priority": "HIGH"},
        add_to_list={"name": "Churn alert"},
    )
    ids = [f"P{i:012x}" for i in range(customers)]
    moving = ids[:: int(round(1 / share))]
    at0, at1 = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC)
    lines = []
    with tempfile.TemporaryDirectory() as tmp, FakeHubSpot(token="t") as crm:
        engine = make_state_engine(f"sqlite:///{tmp}/state.sqlite")
        store = TagStore(engine, crm_fields={"churn_risk": "persona_churn_risk"})
        store.create_schema()
        outbox = trigger_outbox(engine)
        with engine.begin() as conn:
            store.apply(
                conn,
                tags=pd.DataFrame({"customer_id": ids, "churn_risk": "low"}),
                produced_by={"churn_risk": "model:churn@1"},
                at=at0,
            )
        # the CRM's contacts of the customers that will move (set up before the rate limit applies)
        with httpx.Client(base_url=crm.url, headers={"Authorization": "Bearer t"}) as client:
            for start in range(0, len(moving), 100):
                inputs = [
                    {"idProperty": "persona_key", "id": f"K{c}", "properties": {}}
                    for c in moving[start : start + 100]
                ]
                assert (
                    client.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": inputs}).status_code
                    == 200
                )
        crm.set_faults(limit_max=limit_max, limit_interval_ms=interval_ms)
        with crm.lock:
            crm.state.statuses.clear()  # count the storm's requests only
        started = time.perf_counter()
        with engine.begin() as conn:  # the storm: one scoring run moves 10 % to high, firings queued with it
            changes = store.apply(
                conn,
                tags=pd.DataFrame({"customer_id": moving, "churn_risk": "high"}),
                produced_by={"churn_risk": "model:churn@1"},
                at=at1,
            )
            fired = outbox.enqueue(conn, fire([rule], changes, None))
        queued_s = time.perf_counter() - started
        http = {"token": "t", "id_property": "persona_key", "resolver": Keys(), "timeout": 30.0}
        connector = TriggerConnector(
            [rule],
            {
                "crm_task": HubSpotActivitiesConnector(crm.url, render=lambda e: render(rule, e), **http),
                "add_to_list": HubSpotListsConnector(crm.url, **http),
            },
        )
        dispatcher = Dispatcher(outbox, connector, batch_size=500, base_delay=1.0, max_delay=30.0)
        started = time.perf_counter()
        stats = dispatcher.run_until_empty(deadline=time.time() + 3600)
        deliver_s = time.perf_counter() - started
        connector.close()
        tasks = crm.activities("tasks")
        task_ids = pd.read_sql("select change_id from trigger_outbox where crm_field = 'crm_task'", engine)[
            "change_id"
        ].tolist()
        bodies = "\n".join(t["properties"]["hs_task_body"] for t in tasks)
        per_change = [bodies.count(marker(i)) for i in task_ids]
        members = crm.members("Churn alert")
        counts = outbox.counts()
        statuses = dict(crm.state.statuses)
    lines += [
        "## Refresh: trigger storm under the CRM's rate limit (issue 16)",
        "",
        f"Command: `.venv/bin/python -m bench.bench_refresh --part storm --customers {customers}`. "
        f"{customers:,} customers in the tag store (SQLite state database); {len(moving):,} "
        f"({share:.0%}) change `churn_risk` to `high` in one scoring transaction; the rule `churn_alert` "
        "has two actions (a HubSpot task associated with the contact, and a membership of the list "
        "`Churn alert`), so each change fires two outbox entries. Delivered by one dispatcher (batches of "
        f"500 claimed, requests of at most 100 records) to the HubSpot-contract fake (`tests/fakes/hubspot.py`) "
        f"limited to {limit_max} requests per rolling {interval_ms / 1000:.0f} s (429 beyond, with "
        "`X-HubSpot-RateLimit-Interval-Milliseconds`). 2 cores shared with other work; load average "
        f"(1, 5, 15 min) at the end: {_load()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| customers changing tier | {len(moving):,} |",
        f"| trigger actions fired (outbox entries) | {fired:,} |",
        f"| tag changes + firings queued, one transaction (s) | {queued_s:.1f} |",
        f"| delivery, all entries (s) | {deliver_s:.1f} |",
        f"| delivered / dead / unmatched / pending | {counts['delivered']:,} / {counts['dead']:,} / "
        f"{counts['unmatched']:,} / {counts['pending']:,} |",
        f"| HTTP requests of the delivery answered (by status) | {', '.join(f'{k}: {v:,}' for k, v in sorted(statuses.items()))} |",
        f"| 429 answers seen by the dispatcher | {stats.rate_limited:,} |",
        f"| tasks created / task firings | {len(tasks):,} / {len(task_ids):,} |",
        f"| task firings with exactly one task | {sum(1 for n in per_change if n == 1):,} |",
        f"| task firings with more than one task (duplicates) | {sum(1 for n in per_change if n > 1):,} |",
        f"| list members / customers changing tier | {len(members):,} / {len(moving):,} |",
    ]
    ok = fired == 2 * len(moving) and counts["delivered"] == fired and len(tasks) == len(task_ids)
    ok = ok and all(n == 1 for n in per_change) and len(members) == len(moving)
    lines += ["", f"None lost, none twice: {'yes' if ok else 'NO'}."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- refresh
def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "persona", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"persona {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return seconds, done.stdout


def refresh_world(customers: int, *, days: int, workdir: Path | None = None) -> str:
    data_dir = (workdir or Path(tempfile.mkdtemp(prefix="persona-refresh-bench-"))) / "data"
    env = {**os.environ, "PERSONA_DATA_DIR": str(data_dir), "MLFLOW_DISABLE_TELEMETRY": "true"}
    setup = [
        ["data", "generate", "--customers", str(customers), "--seed", "42", "--out", str(data_dir / "raw")],
        ["ingest"],
        ["features", "build"],
        ["features", "apply"],
        ["features", "materialize"],
        ["train", "all"],
        ["tags", "fit"],
        ["refresh"],
    ]
    setup_times = {}
    first_out = ""
    for step in setup:
        print(f"bench refresh: persona {' '.join(step[:2])} ...", flush=True)
        setup_times[" ".join(step[:2])], first_out = _run(step, env)
    # the first refresh delivers within its window and leaves the rest queued: drain it, so the timed
    # run delivers its own changes only
    print("bench refresh: persona crm sync (the first refresh's backlog) ...", flush=True)
    setup_times["crm sync"], _ = _run(["crm", "sync", "--timeout", "3600"], env)
    seconds, added = _run(["data", "generate", "--continue", "--days", str(days)], env)
    print("bench refresh: " + added.strip(), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, out = _run(["refresh"], env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    steps = dict(re.findall(r"(\w+) ([\d.]+)", out.split("seconds: ")[-1].splitlines()[0]))
    queued = re.search(r"tag changes queued: ([\d,]+) for ([\d,]+) customers", out)
    new_rows = re.search(r"new since the last as_of: (.*)", out)
    delivered = re.search(
        r"crm: delivered ([\d,]+), retried ([\d,]+), dead-lettered ([\d,]+), unmatched ([\d,]+)", out
    )
    orders_added = re.search(r"added ([\d,]+) orders of ([\d,]+) customers", added)
    first_queued = re.search(r"tag changes queued: ([\d,]+)", first_out)
    lines = [
        "## Refresh (`persona refresh`, issue 16)",
        "",
        f"Command: `.venv/bin/python -m bench.bench_refresh --part refresh --customers {customers} --days {days}`. "
        f"A world of {customers:,} generated persons (seed 42) built with the CLI (generate, ingest, features "
        "build/apply/materialize, `train all`, `tags fit`, a first `persona refresh` that tags everyone and "
        f"delivers to the embedded SQL CRM); then `persona data generate --continue --days {days}` "
        f"({orders_added.group(1) if orders_added else '?'} new orders of "
        f"{orders_added.group(2) if orders_added else '?'} customers) and the timed second `persona refresh` "
        "(a child process; stages as the run reports them). One run. 2 cores shared with other work; load "
        f"average (1, 5, 15 min) at the end: {_load()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| second refresh, wall (s, incl. start-up) | {wall:.1f} |",
        f"| second refresh, CPU user+sys (s) | {cpu:.1f} |",
        f"| new clean rows since the last as_of | {new_rows.group(1) if new_rows else '?'} |",
        f"| tag changes queued | {queued.group(1) if queued else '?'} (customers scored: {queued.group(2) if queued else '?'}) |",
        f"| CRM: delivered / dead / unmatched (no record key yet) | {delivered.group(1) if delivered else '?'} / "
        f"{delivered.group(3) if delivered else '?'} / {delivered.group(4) if delivered else '?'} |",
        f"| first refresh (everyone tagged): changes queued | {first_queued.group(1) if first_queued else '?'} |",
        "",
        "| stage of the second refresh | seconds |",
        "|---|---|",
        *[f"| {k} | {float(v):.1f} |" for k, v in steps.items()],
        "",
        "| set-up step (once) | seconds |",
        "|---|---|",
        *[f"| persona {k} | {v:.1f} |" for k, v in setup_times.items()],
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- cdnow
CDNOW_SPLIT = "19980615"


def cdnow_incremental(*, rounds: int = 3, workdir: Path) -> str:
    """Day-2 incremental ingest vs a full ingest of day 2 on CDNOW, side by side (see module doc)."""
    import functools
    import statistics

    from configs.settings import load_settings
    from features.incremental import ingest_incremental
    from features.ingest import run_ingest
    from features.shared_data import shared_data_dir

    source = shared_data_dir() / "cdnow" / "CDNOW_master.txt"
    if not source.is_file():
        return f"## Incremental ingest on CDNOW\n\nNot measured: {source} not found (PERSONA_SHARED_DATA).\n"
    header, *rows = source.read_text(encoding="ascii").splitlines(keepends=True)
    early = [row for row in rows if row.split()[1] <= CDNOW_SPLIT]
    late = [row for row in rows if row.split()[1] > CDNOW_SPLIT]
    config = ROOT / "configs" / "datasets" / "cdnow.yaml"
    saved = dict(os.environ)

    def settings(data_dir: Path, orders: Path, as_of: str):  # type: ignore[no-untyped-def]
        os.environ.update(
            PERSONA_DATA_DIR=str(data_dir),
            PERSONA_SOURCES__ORDERS__PATH=str(orders),
            PERSONA_SOURCES__AS_OF=as_of,
            PERSONA_IDENTITY__SALT="cdnow-bench-salt-0123456789",
        )
        return load_settings(config)

    def timed(job):  # type: ignore[no-untyped-def]
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        out = job()
        return time.perf_counter() - wall, time.process_time() - cpu, load, out

    incremental, full, line = [], [], ""
    try:
        for i in range(rounds):
            orders = workdir / f"inc{i}" / "orders.txt"
            orders.parent.mkdir(parents=True)
            orders.write_text("".join([header, *early]), encoding="ascii")
            first = ingest_incremental(settings(orders.parent, orders, "1998-06-16T00:00:00Z"), state=None)
            orders.write_text("".join([header, *early, *late]), encoding="ascii")
            day2 = settings(orders.parent, orders, "1998-07-01T00:00:00Z")
            *measured, outcome = timed(functools.partial(ingest_incremental, day2, state=first.state))
            assert not outcome.full, outcome.reason
            incremental.append(measured)
            line = outcome.line()
            whole = settings(workdir / f"full{i}", orders, "1998-07-01T00:00:00Z")
            *measured, _ = timed(functools.partial(run_ingest, whole))
            full.append(measured)
            print(f"bench cdnow: round {i + 1}: incremental {incremental[-1]}, full {full[-1]}", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)

    def median(runs: list, k: int) -> float:
        return statistics.median(r[k] for r in runs)

    return (
        "\n".join(
            [
                "## Incremental ingest on CDNOW (the ingest step of `persona refresh`)",
                "",
                "Command: `.venv/bin/python -m bench.bench_refresh --part cdnow`. CDNOW's purchase file through "
                "configs/datasets/cdnow.yaml alone: day 1 = purchases up to 1998-06-15 ingested in full (as of "
                "1998-06-16), day 2 = the whole file with the later purchases appended (as of 1998-07-01). Timed: "
                f"the day-2 incremental ingest (`{line}`) and a full ingest of the same day-2 file into another "
                f"data dir, alternated, {rounds} rounds, in one process (CPU = process time, all threads). 2 cores "
                f"shared with other work; load average (1 min) at each start: incremental "
                f"{', '.join(f'{r[2]:.1f}' for r in incremental)}, full {', '.join(f'{r[2]:.1f}' for r in full)}; "
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
                "",
                "| median of the rounds | incremental day 2 | full ingest of day 2 | ratio |",
                "|---|---|---|---|",
                f"| wall (s) | {median(incremental, 0):.2f} | {median(full, 0):.2f} | "
                f"{median(incremental, 0) / median(full, 0):.2f} |",
                f"| CPU (s) | {median(incremental, 1):.2f} | {median(full, 1):.2f} | "
                f"{median(incremental, 1) / median(full, 1):.2f} |",
            ]
        )
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("storm", "refresh", "cdnow", "all"), default="all")
    parser.add_argument(
        "--customers", type=int, default=int(os.environ.get("PERSONA_BENCH_CUSTOMERS", 100_000))
    )
    parser.add_argument(
        "--days", type=int, default=7, help="days of new orders (7 = about 1 %% of two years)"
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part in ("storm", "all"):
        text = storm(args.customers)
        (RESULTS / "refresh_storm.md").write_text(text, encoding="utf-8")
        print(text)
    if args.part in ("refresh", "all"):
        workdir = Path(tempfile.mkdtemp(prefix="persona-refresh-bench-"))
        try:
            text = refresh_world(args.customers, days=args.days, workdir=workdir)
        finally:
            if not os.environ.get("PERSONA_BENCH_KEEP"):  # set it to look at the world afterwards
                shutil.rmtree(workdir, ignore_errors=True)
        (RESULTS / "refresh.md").write_text(text, encoding="utf-8")
        print(text)
    if args.part in ("cdnow", "all"):
        workdir = Path(tempfile.mkdtemp(prefix="persona-refresh-cdnow-bench-"))
        try:
            text = cdnow_incremental(workdir=workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        (RESULTS / "refresh_cdnow.md").write_text(text, encoding="utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale: the whole pipeline at growing populations, each stage a child process measured for wall time
and peak RSS (the whole process tree, polled), with the growth exponent between sizes.

generate -> ingest -> features -> Feast apply -> materialize (SQLite; Redis when a redis-server is
installed) -> retrain (train all models) -> tags fit -> score + queue. A stage that fails, runs out of
time or grows past the memory limit is stopped and reported (which stage, why, how far it got); the
later stages of that size are skipped, the other sizes still run. Writes `bench/results/scale.md` and
`bench/results/scale.json`; under SCALE_ENGINE=spark, `scale_spark.md` and `scale_spark.json`.

    BENCH=scale make bench                                   # 100k, 300k, 1M
    SCALE_SIZES=100000,300000 .venv/bin/python -m bench.bench_scale
    SCALE_DIR=/big/disk SCALE_STAGE_TIMEOUT=1800 SCALE_MEM_LIMIT_MB=20000 ...
    SCALE_SIZES=1000000 SCALE_STAGES=generate SCALE_REUSE=1 ...       # one stage; the world is kept
    SCALE_SIZES=1000000 SCALE_STAGES=ingest,features SCALE_REUSE=1 ... # resume on the kept world
    SCALE_SIZES=100000 SCALE_ENGINE=spark ...   # every stage with `engine: spark` (local Spark)

SCALE_ENGINE (duckdb | spark, default duckdb) sets PERSONA_ENGINE for every stage, so ingest's engine
steps, the feature tables and Feast's offline store (training sets, materialization) follow it.
Under SCALE_REUSE=1 a run adds its stages to the engine's earlier results (same stage and size
replaced), so a world measured stage by stage over several invocations keeps one table.

Not part of a plain `make bench` (it runs for an hour or more): only when BENCH=scale names it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PERSONA = [sys.executable, "-m", "persona"]
AS_OF = "2026-01-01T00:00:00Z"  # pinned: the figures do not depend on the day they are measured
POLL_SECONDS = 0.5
ENGINES = ("duckdb", "spark")  # features/engine.py's ENGINES (not imported: the bench stays light)


class BenchConfigError(ValueError):
    """A SCALE_* variable the bench cannot use (one line, exit 2)."""


def scale_engine(environ: dict[str, str] | os._Environ) -> str:
    """SCALE_ENGINE: the engine every stage runs with (default duckdb)."""
    engine = environ.get("SCALE_ENGINE", "").strip() or "duckdb"
    if engine not in ENGINES:
        raise BenchConfigError(f"SCALE_ENGINE: unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return engine


def results_stem(engine: str) -> str:
    """The results' file name: `scale` for DuckDB (the default), `scale_<engine>` otherwise, so a run on
    another engine never overwrites the DuckDB figures."""
    return "scale" if engine == "duckdb" else f"scale_{engine}"


def run_label(meta: dict) -> str:
    """What names a run in the report: its command, start and the load it started under."""
    return (
        f"{meta['command']}, from {meta['started']} UTC, 1-minute load {meta['load_start']:.1f} at its start"
    )


def kept_notes(results: list[Measure], this_run: str) -> list[str]:
    """One note per earlier run whose measures the table still shows, naming exactly those measures."""
    runs: dict[str, list[Measure]] = {}
    for m in results:
        if m.run != this_run:
            runs.setdefault(m.run or "an earlier run", []).append(m)
    return [
        f"measured by an earlier run ({run}): " + ", ".join(f"{m.customers:,} {m.stage}" for m in kept)
        for run, kept in runs.items()
    ]


def merge_results(earlier: list[Measure], latest: list[Measure]) -> list[Measure]:
    """An earlier run's measures of the same world and engine, with this run's replacing the same
    (stage, size): SCALE_REUSE runs stage by stage and one table keeps them all, in stage order."""
    fresh = {(m.stage, m.customers) for m in latest}
    merged = [m for m in earlier if (m.stage, m.customers) not in fresh] + latest
    order = {st.name: i for i, st in enumerate(stages(0, redis=True))}
    return sorted(merged, key=lambda m: (m.customers, order.get(m.stage, len(order))))


@dataclass
class Stage:
    name: str
    args: list[str]
    config: str | None = None  # a config file merged over base.yaml (the Redis online store)
    command: list[str] | None = None  # a whole command instead of `persona <args>`


@dataclass
class Measure:
    stage: str
    customers: int
    status: str = "ok"  # ok | failed | timeout | memory | skipped
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + sys of the stage's process tree (steadier than wall under load)
    peak_rss_mb: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    reason: str = ""
    output: str = ""  # the command's last lines (what it says it did)
    extra: dict = field(default_factory=dict)
    engine: str = "duckdb"  # SCALE_ENGINE of the run that measured it
    run: str = ""  # the run that measured it (`run_label`): SCALE_REUSE keeps measures of several runs


def stages(customers: int, *, redis: bool) -> list[Stage]:
    plan = [
        Stage("generate", ["data", "generate", "--customers", str(customers), "--seed", "42", "--force"]),
        Stage("ingest", ["ingest"]),
        Stage("features", ["features", "build"]),
        Stage("feast_apply", ["features", "apply"]),
        Stage("materialize_sqlite", ["features", "materialize", "--full"]),
    ]
    if redis:
        plan.append(
            Stage("materialize_redis", ["features", "materialize", "--full"], config="configs/redis.yaml")
        )
    plan += [
        Stage("retrain", ["train", "all"]),
        Stage("tags_fit", ["tags", "fit"]),
        Stage("score_queue", ["score", "--all", "--write-back"]),
    ]
    return plan


def stage_output(lines: list[str]) -> str:
    """What a stage says it did: its last three lines, before `score`'s per-tag distribution (hundreds
    of value counts that would hide the customers scored and the changes queued)."""
    cut = next((i for i, line in enumerate(lines) if line.startswith("distribution of each tag")), len(lines))
    said = [line.strip() for line in lines[:cut] if line.strip()]
    return " / ".join(said[-3:])[:400]


def _tree_rss(proc: psutil.Process, names: set[str] | None = None, jvm_cpu: dict | None = None) -> int:
    """RSS of `proc` and its descendants; their process names are added to `names` (a Spark JVM shows
    up as `java`: which stages really started Spark) and each JVM's CPU seconds so far to `jvm_cpu`."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
            name = p.name()
            if names is not None:
                names.add(name)
            if jvm_cpu is not None and name == "java":
                jvm_cpu[p] = _cpu(p)
    return total


def _cpu(p: psutil.Process) -> float:
    times = p.cpu_times()
    return times.user + times.system


def _jvm_final_cpu(jvm_cpu: dict, *, wait: float = 20.0) -> float:
    """CPU seconds of the stage's JVMs. PySpark never waits for its JVM (it exits on its own once the
    Python side has gone), so the kernel's child accounting (RUSAGE_CHILDREN) misses it: its time is
    polled instead, and a JVM still shutting down is followed until it exits (at most `wait` s)."""
    deadline = time.perf_counter() + wait
    for p in jvm_cpu:
        while time.perf_counter() < deadline:
            try:
                jvm_cpu[p] = _cpu(p)
                if p.status() == psutil.STATUS_ZOMBIE:  # exited; its parent (or init) not reaped it yet
                    break
            except psutil.Error:
                break
            time.sleep(0.1)
    return sum(jvm_cpu.values())


def run_stage(
    stage: Stage, *, customers: int, env: dict[str, str], timeout: float, mem_limit_mb: float, log: Path
) -> Measure:
    """Run one stage as a child process tree, polling its RSS; stop it past `timeout` or `mem_limit_mb`."""
    m = Measure(stage.name, customers, load_before=os.getloadavg()[0])
    cmd = stage.command or [*PERSONA, *(["--config", stage.config] if stage.config else []), *stage.args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "wb") as out:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(popen.pid)
        peak = 0
        names: set[str] = set()
        jvm_cpu: dict[psutil.Process, float] = {}
        while popen.poll() is None:
            peak = max(peak, _tree_rss(proc, names, jvm_cpu))
            elapsed = time.perf_counter() - started
            why = ""
            if elapsed > timeout:
                m.status, why = "timeout", f"still running after {timeout:.0f} s (SCALE_STAGE_TIMEOUT)"
            elif peak > mem_limit_mb * 2**20:
                m.status, why = (
                    "memory",
                    (
                        f"process tree reached {peak / 2**20:,.0f} MB, over SCALE_MEM_LIMIT_MB={mem_limit_mb:,.0f} "
                        f"(machine {psutil.virtual_memory().total / 2**30:.0f} GB)"
                    ),
                )
            if why:
                m.reason = f"stopped after {elapsed:.0f} s: {why}"
                for p in [*proc.children(recursive=True), proc]:
                    with contextlib.suppress(psutil.Error):
                        p.kill()
                popen.wait()
                break
            time.sleep(POLL_SECONDS)
    m.seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if jvm_cpu:  # outside the child accounting above (the JVM is never waited for): added
        m.extra["jvm_cpu_seconds"] = round(_jvm_final_cpu(jvm_cpu), 1)
        m.cpu_seconds += m.extra["jvm_cpu_seconds"]
    m.peak_rss_mb = peak / 2**20
    m.load_after = os.getloadavg()[0]
    m.extra["jvm"] = "java" in names  # a Spark session (local mode) ran in this stage's tree
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    m.output = stage_output(tail)
    if m.status == "ok" and popen.returncode != 0:
        m.status = "failed"
        if popen.returncode < 0:
            m.reason = f"killed by signal {-popen.returncode} (the kernel's OOM killer sends 9)"
        else:
            m.reason = f"exit {popen.returncode}: {tail[-1] if tail else 'no output'}"[:400]
    return m


def compare_child(data_dir: Path, engine: str, redis_url: str | None) -> None:
    """One materialization of every view into a fresh online store, timed (prints JSON): `feast`,
    Feast's own `FeatureStore.materialize`; `batched`, features.materialize as the CLI runs it."""
    import logging
    import resource
    from datetime import UTC, datetime

    from configs.settings import load_settings
    from features import feast_io
    from features.clock import features_as_of

    logging.disable(logging.WARNING)
    store_kind, how = engine.split("-")
    overrides: dict = {"sources": {"as_of": AS_OF}}
    if store_kind == "redis":
        overrides["feast"] = {"online_store": "redis", "redis_connection_string": redis_url}
    settings = load_settings(data_dir=str(data_dir), **overrides)
    if store_kind == "sqlite":  # empty the online tables (made by apply): every run writes them afresh
        import sqlite3

        with sqlite3.connect(settings.path(settings.feast.sqlite_path)) as con:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                con.execute(f'DELETE FROM "{table}"')
    fixed_end = os.environ.get("SCALE_MATERIALIZE_END")  # synthetic feature tables: no build report
    end = datetime.fromisoformat(fixed_end) if fixed_end else features_as_of(settings).to_pydatetime()
    store = feast_io.get_store(settings)
    views = [v for v in store.list_feature_views() if Path(v.batch_source.path).is_file()]
    started = time.perf_counter()
    if how == "feast":
        store.materialize(
            start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=end, feature_views=[v.name for v in views]
        )
        rows = None
    else:
        rows = feast_io.materialize(settings, end=end, full=True).rows_written
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_mb": peak, "views": len(views)}))


def compare_materialize(
    data_dir: Path,
    redis_url: str | None,
    *,
    customers: int = 0,
    engines: tuple[str, ...] = ("sqlite-feast", "sqlite-batched", "redis-feast", "redis-batched"),
    timeout: float = 2400,
    mem_limit_mb: float = 12_000,
    env: dict[str, str] | None = None,
) -> list[dict]:
    """Feast's own materialize vs the batched one on the same feature tables, SQLite and Redis, each a
    child process measured as a stage (wall, CPU, peak RSS; stopped past the time or memory limit)."""
    out = []
    for engine in engines:
        if engine.startswith("redis"):
            if not redis_url:
                continue
            subprocess.run(["redis-cli", "-u", f"redis://{redis_url}", "FLUSHALL"], capture_output=True)
        command = [
            sys.executable,
            "-m",
            "bench.bench_scale",
            "--compare-child",
            str(data_dir),
            engine,
            redis_url or "",
        ]
        m = run_stage(
            Stage(engine, [], command=command),
            customers=customers,
            env=env or dict(os.environ),
            timeout=timeout,
            mem_limit_mb=mem_limit_mb,
            log=data_dir / f"bench-compare-{engine}.log",
        )
        result = {"engine": engine, "load": m.load_before, **asdict(m)}
        lines = [
            x
            for x in (data_dir / f"bench-compare-{engine}.log").read_text().splitlines()
            if x.startswith("{")
        ]
        if m.status == "ok" and lines:
            inner = json.loads(lines[-1])
            result["seconds"] = inner["seconds"]  # the materialization itself, imports excluded
            result["rows"] = inner["rows"]
        else:
            result["error"] = f"{m.status}: {m.reason}"
        print(
            f"  materialize {engine}: {m.status} {result.get('seconds', 0):.1f} s {m.cpu_seconds:.1f} CPU s "
            f"{m.peak_rss_mb:,.0f} MB {m.reason}",
            flush=True,
        )
        out.append(result)
    rows = next((r.get("rows") for r in out if r.get("rows")), None)
    for r in out:
        r["rows"] = r.get("rows") or rows  # Feast's own reports no count: the same rows are written
    return out


def materialize_only() -> int:
    """`--materialize`: the online store alone, on random feature tables of the contract's shape (one
    snapshot per customer; tests/feast_support.synthetic_tables), at SCALE_MAT_SIZES customers: Feast's
    own materialize (up to SCALE_MAT_FEAST_MAX customers: it holds every protobuf at once) vs the
    batched writer, SQLite and Redis. Writes bench/results/scale_materialize.md."""
    from tests.feast_support import synthetic_tables, write_tables

    sizes = [
        int(x) for x in os.environ.get("SCALE_MAT_SIZES", "100000,300000,1000000").split(",") if x.strip()
    ]
    feast_max = int(os.environ.get("SCALE_MAT_FEAST_MAX", "300000"))
    mem_limit = float(os.environ.get("SCALE_MEM_LIMIT_MB", "12000"))
    base = Path(os.environ.get("SCALE_DIR", ROOT / "data" / "bench" / "scale")).resolve() / "materialize"
    base.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = start_redis(base / "redis")
    started = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    load_start = os.getloadavg()[0]
    end = "2025-01-02T00:00:00+00:00"
    runs: dict[int, list[dict]] = {}
    try:
        for n in sizes:
            data_dir = base / f"n{n}"
            shutil.rmtree(data_dir, ignore_errors=True)
            env = {**os.environ, "PERSONA_DATA_DIR": str(data_dir), "SCALE_MATERIALIZE_END": end}
            from configs.settings import load_settings
            from features import feast_io

            settings = load_settings(data_dir=str(data_dir))
            write_tables(
                settings.path(settings.feast.source_dir),
                synthetic_tables(customers=n, snapshots=["2025-01-01"]),
            )
            feast_io.apply_repo(settings)
            engines = ("sqlite-batched", "redis-batched")
            if n <= feast_max:
                engines = ("sqlite-feast", "sqlite-batched", "redis-feast", "redis-batched")
            runs[n] = compare_materialize(
                data_dir, redis_url, customers=n, engines=engines, mem_limit_mb=mem_limit, env=env
            )
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
    lines = [
        "## Scale: Feast materialization of up to a million customers (`bench_scale --materialize`)",
        "",
        f"Command: `SCALE_MAT_SIZES={','.join(map(str, sizes))} .venv/bin/python -m bench.bench_scale "
        f"--materialize`. Random feature tables of the contract's shape (4 views, 35 features, one snapshot "
        f"per customer), every view into a fresh online store, each run a child process. Feast's own "
        f"`FeatureStore.materialize` only up to {feast_max:,} customers. {os.cpu_count()} cores shared with "
        f"other sessions: load {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"({started} to {datetime.now(UTC):%H:%M} UTC); CPU time is the steadier figure. Seconds: the "
        "materialization itself (imports excluded); CPU and peak RSS: the whole child process.",
        "",
        "| customers | online store, writer | entity rows | seconds | rows/s | CPU s | peak RSS MB | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, results in runs.items():
        for r in results:
            if "error" in r:
                lines.append(
                    f"| {n:,} | {r['engine']} | **{r['error']}** | | | {r['cpu_seconds']:,.0f} | "
                    f"{r['peak_rss_mb']:,.0f} | {r['load']:.1f} |"
                )
                continue
            rate = (r["rows"] or 0) / r["seconds"] if r["seconds"] else 0
            lines.append(
                f"| {n:,} | {r['engine']} | {r['rows'] or 0:,} | {r['seconds']:,.1f} | {rate:,.0f} | "
                f"{r['cpu_seconds']:,.1f} | {r['peak_rss_mb']:,.0f} | {r['load']:.1f} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_materialize.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS / "scale_materialize.json").write_text(json.dumps(runs, indent=1, default=str), encoding="utf-8")
    print("\n".join(lines))
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen | None, str | None]:
    """A private redis-server (no persistence) for the Redis materialization, if one is installed."""
    exe = shutil.which("redis-server")
    if not exe:
        return None, None
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    return None, None


def exponent(small: Measure, big: Measure, attr: str = "cpu_seconds") -> float | None:
    """b in value ~ customers**b between two sizes (None unless both stages completed). CPU time by
    default: on a shared machine wall time measures the neighbours as much as the stage."""
    a, b = getattr(small, attr), getattr(big, attr)
    if small.status != "ok" or big.status != "ok" or a <= 0 or b <= 0:
        return None
    return math.log(b / a) / math.log(big.customers / small.customers)


def rss_exponent(small: Measure, big: Measure) -> float | None:
    if small.status != "ok" or big.status != "ok" or small.peak_rss_mb <= 0 or big.peak_rss_mb <= 0:
        return None
    return math.log(big.peak_rss_mb / small.peak_rss_mb) / math.log(big.customers / small.customers)


def _rows(data_dir: Path) -> dict[str, int]:
    """Rows of the generated sources (the generator's own count, from ground truth) for the report."""
    try:
        import pyarrow.parquet as pq

        persons = pq.ParquetFile(data_dir / "raw" / "ground_truth" / "persons.parquet").metadata.num_rows
        records = pq.ParquetFile(data_dir / "raw" / "ground_truth" / "person_map.parquet").metadata.num_rows
        return {"persons": persons, "source_records": records}
    except Exception:  # noqa: BLE001 (a report detail: generation may have failed)
        return {}


def report(results: list[Measure], *, sizes: list[int], meta: dict) -> str:
    names = list(dict.fromkeys(m.stage for m in results))
    by = {(m.stage, m.customers): m for m in results}
    engine = meta.get("engine", "duckdb")
    on = "local Spark (`engine: spark`)" if engine == "spark" else f"`engine: {engine}`"
    lines = [
        f"## Scale: the pipeline at {', '.join(f'{n:,}' for n in sizes)} customers on {on} (`BENCH=scale`)",
        "",
        f"Command: `{meta['command']}`. {meta['cores']} cores, {meta['memory_gb']:.0f} GB, shared with other "
        f"sessions: 1-minute load {meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at the end "
        "(wall times are inflated when the load exceeds the cores). "
        f"{meta['started']} to {meta['ended']} UTC. Each stage is one `persona` command in a child process; "
        f"peak RSS is the whole process tree, polled every {POLL_SECONDS} s. as_of {AS_OF}, seed 42. "
        f"Limits: {meta['timeout']:.0f} s and {meta['mem_limit_mb']:,.0f} MB per stage.",
        "",
        "| stage | "
        + " | ".join(f"{n:,}: wall s / CPU s / peak MB" for n in sizes)
        + " | exponent: wall | CPU | RSS |",
        "|---|" + "---:|" * len(sizes) + "---:|---:|---:|",
    ]
    for name in names:
        cells = []
        for n in sizes:
            m = by.get((name, n))
            if m is None:
                cells.append("")
            elif m.status == "ok":
                cells.append(f"{m.seconds:,.1f} / {m.cpu_seconds:,.1f} / {m.peak_rss_mb:,.0f}")
            else:
                cells.append(f"**{m.status}** ({m.seconds:,.0f} s, {m.peak_rss_mb:,.0f} MB)")
        pairs = [(by.get((name, a)), by.get((name, b))) for a, b in zip(sizes, sizes[1:], strict=False)]
        w = [exponent(a, b, "seconds") for a, b in pairs if a and b]
        t = [exponent(a, b) for a, b in pairs if a and b]
        r = [rss_exponent(a, b) for a, b in pairs if a and b]
        fmt = lambda xs: ", ".join("n/a" if x is None else f"{x:.2f}" for x in xs) or "n/a"  # noqa: E731
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(w)} | {fmt(t)} | {fmt(r)} |")
    totals = []
    for n in sizes:
        ms = [m for m in results if m.customers == n]
        ok = all(m.status == "ok" for m in ms)
        peak = max((m.peak_rss_mb for m in ms), default=0)
        totals.append(
            f"{n:,}: {sum(m.seconds for m in ms if m.status != 'skipped'):,.0f} s end to end "
            f"({sum(m.cpu_seconds for m in ms):,.0f} CPU s)"
            f"{'' if ok else ' (incomplete)'}, peak {peak:,.0f} MB"
        )
    lines += ["", "Totals: " + "; ".join(totals) + ".", ""]
    lines += [
        "1-minute load before / after each stage: "
        + "; ".join(
            f"{m.customers:,} {m.stage} {m.load_before:.1f} / {m.load_after:.1f}"
            for m in results
            if m.status != "skipped"
        )
        + ".",
        "",
    ]
    jvm = [name for name in names if any(m.extra.get("jvm") for m in results if m.stage == name)]
    lines += [
        "Stages whose process tree started a JVM (a Spark session): "
        + (", ".join(jvm) or "none")
        + "."
        + (
            " Their CPU s include the JVM's, polled: PySpark never waits for its JVM, so the kernel's "
            "accounting of the stage's children misses it."
            if jvm
            else ""
        ),
        "",
    ]
    problems = [m for m in results if m.status != "ok"]
    if problems:
        lines += ["Stages that did not complete:", ""]
        lines += [f"- {m.customers:,} customers, {m.stage}: {m.status}: {m.reason}" for m in problems]
        lines.append("")
    for n, runs in meta.get("materialize_compare", {}).items():
        lines += [
            f"Materialization at {int(n):,} customers, every view into a fresh online store, Feast's own "
            "`FeatureStore.materialize` vs the batched writer (`features/materialize.py`, what "
            "`persona features materialize` runs), each in its own process (times exclude imports):",
            "",
            "| online store, writer | entity rows | seconds | rows/s | peak RSS MB | load |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in runs:
            if "error" in r:
                lines.append(f"| {r['engine']} | failed: {r['error']} | | | | {r['load']:.1f} |")
                continue
            rate = (r["rows"] or 0) / r["seconds"] if r["seconds"] else 0
            lines.append(
                f"| {r['engine']} | {r['rows'] or 0:,} | {r['seconds']:,.1f} | {rate:,.0f} | "
                f"{r['peak_rss_mb']:,.0f} | {r['load']:.1f} |"
            )
        lines.append("")
    lines += ["What each stage printed last (rows, counts):", ""]
    for m in results:
        if m.status == "ok" and m.output:
            lines.append(f"- {m.customers:,} {m.stage}: {m.output}")
    return "\n".join(lines) + "\n"


_LOG_LINE = re.compile(
    r"^\s*([\d,]+) (\w+)\s+(\w+)\s+([\d.]+) s\s+([\d.]+) CPU s\s+([\d,]+) MB load ([\d.]+) ?(.*)$"
)


def report_from_files(log: str | None = None) -> int:
    """`--report [LOG]`: rebuild scale.md from scale.json (sizes the run finished), plus the stages of
    a size it was stopped in, read from the run's printed lines (LOG), e.g. when the deadline came first."""
    stem = results_stem(scale_engine(os.environ))
    data = json.loads((RESULTS / f"{stem}.json").read_text(encoding="utf-8"))
    meta = data["meta"]
    results = [Measure(**m) for m in data["results"]]
    for m in results:  # written before measures named their run: the file's own run
        m.run = m.run or run_label(meta)
    done = {(m.customers, m.stage) for m in results}
    if log:
        for line in Path(log).read_text(encoding="utf-8").splitlines():
            hit = _LOG_LINE.match(line)
            if not hit:
                continue
            n, stage = int(hit.group(1).replace(",", "")), hit.group(2)
            if (n, stage) in done:
                continue
            results.append(
                Measure(
                    stage,
                    n,
                    status=hit.group(3),
                    seconds=float(hit.group(4)),
                    cpu_seconds=float(hit.group(5)),
                    peak_rss_mb=float(hit.group(6).replace(",", "")),
                    load_after=float(hit.group(7)),
                    reason=hit.group(8).strip(),
                    run=run_label(meta),
                )
            )
            done.add((n, stage))
        stopped = sorted({m.customers for m in results} - {m["customers"] for m in data["results"]})
        for n in stopped:
            meta.setdefault("note", []).append(
                f"{n:,} customers: the run was stopped after the stages listed (the session's deadline), "
                "not by a failure; the later stages were not run"
            )
    sizes = sorted({m.customers for m in results})
    meta.setdefault("load_end", os.getloadavg()[0])
    meta.setdefault("ended", f"{datetime.now(UTC):%Y-%m-%d %H:%M}")
    text = report(results, sizes=sizes, meta=meta)
    for note in [*meta.get("note", []), *kept_notes(results, run_label(meta))]:
        text += f"\nNote: {note}.\n"
    (RESULTS / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--compare-child"]:
        compare_child(Path(sys.argv[2]), sys.argv[3], sys.argv[4] or None)
        return 0
    if sys.argv[1:2] == ["--materialize"]:
        return materialize_only()
    try:
        engine = scale_engine(os.environ)
    except BenchConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if sys.argv[1:2] == ["--report"]:
        return report_from_files(*sys.argv[2:3])
    stem = results_stem(engine)
    sizes = [int(s) for s in os.environ.get("SCALE_SIZES", "100000,300000,1000000").split(",") if s.strip()]
    base = Path(os.environ.get("SCALE_DIR", ROOT / "data" / "bench" / "scale")).resolve()
    timeout = float(os.environ.get("SCALE_STAGE_TIMEOUT", "2400"))
    mem_limit = float(os.environ.get("SCALE_MEM_LIMIT_MB", str(0.85 * psutil.virtual_memory().total / 2**20)))
    # SCALE_REUSE=1: run on the world a previous run kept (no wipe before, none after), so a long size
    # can be measured stage by stage (SCALE_STAGES) across several invocations
    reuse = os.environ.get("SCALE_REUSE", "0") == "1"
    keep = reuse or os.environ.get("SCALE_KEEP", "0") == "1"
    only = {s.strip() for s in os.environ.get("SCALE_STAGES", "").split(",") if s.strip()}
    unknown = only - {st.name for st in stages(0, redis=True)}
    if unknown:
        print(f"SCALE_STAGES: unknown stage(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    # Feast's own materialize beside the batched one (slow and memory-hungry at 1M: 100k by default)
    compare_sizes = {int(s) for s in os.environ.get("SCALE_COMPARE_SIZES", "100000").split(",") if s.strip()}
    base.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = start_redis(base / "redis")
    meta = {
        "command": f"SCALE_SIZES={','.join(map(str, sizes))}"
        + (f" SCALE_STAGES={','.join(sorted(only))}" if only else "")
        + (" SCALE_REUSE=1" if reuse else "")
        + (f" SCALE_ENGINE={engine}" if engine != "duckdb" else "")
        # the session's properties (driver memory...) shape Spark's figures: part of the command
        + (
            f" PERSONA_SPARK__CONF='{os.environ['PERSONA_SPARK__CONF']}'"
            if engine == "spark" and os.environ.get("PERSONA_SPARK__CONF")
            else ""
        )
        + " BENCH=scale make bench",
        "engine": engine,
        "cores": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "load_start": os.getloadavg()[0],
        "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        "timeout": timeout,
        "mem_limit_mb": mem_limit,
        "redis": redis_url is not None,
    }
    results: list[Measure] = []
    earlier: list[Measure] = []
    if reuse and (RESULTS / f"{stem}.json").is_file():
        previous = json.loads((RESULTS / f"{stem}.json").read_text(encoding="utf-8"))
        earlier = [Measure(**m) for m in previous["results"]]
        for m in earlier:  # results written before measures named their run: the file's last run
            m.run = m.run or run_label(previous["meta"])
    try:
        for n in sizes:
            data_dir = base / f"n{n}"
            if data_dir.exists() and not reuse:
                shutil.rmtree(data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
            env = {
                **os.environ,
                "PERSONA_DATA_DIR": str(data_dir),
                "PERSONA_SOURCES__AS_OF": AS_OF,
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "BENTOML_DO_NOT_TRACK": "true",
                "PERSONA_ENGINE": engine,
            }
            if redis_url:
                env["PERSONA_FEAST__REDIS_CONNECTION_STRING"] = redis_url
            failed: Measure | None = None
            for stage in stages(n, redis=redis_url is not None):
                if only and stage.name not in only:
                    continue
                if failed is not None:
                    results.append(
                        Measure(
                            stage.name,
                            n,
                            status="skipped",
                            reason=f"{failed.stage} did not complete",
                            engine=engine,
                            run=run_label(meta),
                        )
                    )
                    continue
                log = data_dir / f"bench-{stage.name}.log"
                m = run_stage(stage, customers=n, env=env, timeout=timeout, mem_limit_mb=mem_limit, log=log)
                m.engine = engine
                m.run = run_label(meta)
                if stage.name == "generate":
                    m.extra.update(_rows(data_dir))
                results.append(m)
                print(
                    f"{n:>9,} {stage.name:<20} {m.status:<8} {m.seconds:8.1f} s {m.cpu_seconds:8.1f} CPU s "
                    f"{m.peak_rss_mb:8,.0f} MB "
                    f"load {m.load_after:.1f} {m.reason}",
                    flush=True,
                )
                if m.status != "ok":
                    failed = m
            if n in compare_sizes and failed is None:
                meta.setdefault("materialize_compare", {})[str(n)] = compare_materialize(
                    data_dir, redis_url, customers=n, env=env, mem_limit_mb=mem_limit
                )
            write_json(stem, meta, merge_results(earlier, results))
            if not keep:
                shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
    meta["load_end"] = os.getloadavg()[0]
    meta["ended"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    write_json(stem, meta, merge_results(earlier, results))
    merged = merge_results(earlier, results)
    text = report(merged, sizes=sorted({m.customers for m in merged}), meta=meta)
    for note in [*meta.get("note", []), *kept_notes(merged, run_label(meta))]:
        text += f"\nNote: {note}.\n"
    (RESULTS / f"{stem}.md").write_text(text, encoding="utf-8")
    print(f"wrote {RESULTS / f'{stem}.md'}")
    return 0 if all(m.status == "ok" for m in results) else 1


def write_json(stem: str, meta: dict, results: list[Measure]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": [asdict(m) for m in results]}, indent=1), encoding="utf-8"
    )


if __name__ == "__main__":
    sys.exit(main())

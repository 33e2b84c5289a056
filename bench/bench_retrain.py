"""Benchmark `persona retrain` at 100k customers: the whole job (build features -> Feast apply and
materialize -> train, log and gate segments, churn and conversion -> promote) and each model alone.

Clean tables come from the project's generator and ingestion (reused from `data/bench/features_<N>` when
`bench_features` already made them, else made here). Every measured run is a fresh child process on a
fresh copy of the data dir (empty Feast registry and MLflow store), so its peak RSS is its own.
Writes `bench/results/retrain.md`.

    BENCH=retrain make bench                      # or: .venv/bin/python -m bench.bench_retrain
    PERSONA_BENCH_CUSTOMERS=20000 PERSONA_BENCH_RUNS=1 python -m bench.bench_retrain   # quicker
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "retrain.md"
KINDS = ("segments", "churn", "conversion")


def _settings(data_dir: Path):
    from configs.settings import load_settings

    # as_of pinned so ingestion (and so the benchmark) does not depend on the day it runs
    return load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})


def prepare(customers: int, base: Path) -> dict:
    """Clean tables for `customers` under `base/clean` (copied from the features benchmark if there)."""
    clean = base / "clean"
    if not (clean / "ingest_report.json").is_file():
        shared = ROOT / "data" / "bench" / f"features_{customers}" / "clean"
        if (shared / "ingest_report.json").is_file():
            shutil.copytree(shared, clean, dirs_exist_ok=True)
        else:
            from features.ingest import run_ingest
            from features.synthetic.generate import generate

            settings = _settings(base)
            started = time.perf_counter()
            generate(
                settings.generator.model_copy(update={"customers": customers}), out=base / "raw", force=True
            )
            run_ingest(settings)
            print(f"  generated and ingested {customers:,} customers in {time.perf_counter() - started:.0f}s")
    report = json.loads((clean / "ingest_report.json").read_text(encoding="utf-8"))
    return report.get("tables", {})


def fresh_copy(base: Path, run_dir: Path) -> None:
    """A data dir holding only the clean tables: no features, Feast registry or MLflow store yet."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(base / "clean", run_dir / "clean")


def child(mode: str, data_dir: Path) -> None:
    """`retrain`: the whole job; `<kind>`: that model alone on an already built dir. Prints JSON."""
    import logging
    import resource

    logging.disable(logging.WARNING)
    settings = _settings(data_dir)
    started = time.perf_counter()
    out: dict = {}
    if mode == "retrain":
        from training.retrain import retrain

        report = retrain(settings, say=lambda _: None)
        out["steps"] = report.steps
        out["decisions"] = {k: o.decision.reason for k, o in report.outcomes.items()}
        out["metrics"] = {
            k: {m: o.metrics.get(m) for m in ("roc_auc", "pr_auc", "silhouette", "n")}
            for k, o in report.outcomes.items()
        }
        out["skipped"] = report.skipped
    else:
        from training.jobs import train_model

        outcome = train_model(settings, mode, promote=False)
        out["rows_test"] = outcome.metrics.get("n")
    out["seconds"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = usage.ru_utime + usage.ru_stime  # CPU time: comparable when the machine is shared
    out["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(out, default=str))


def _run(mode: str, data_dir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_retrain", "--child", mode, str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PERSONA_LOG_LEVEL": "WARNING"},
    )
    if proc.returncode:
        raise SystemExit(f"bench child {mode} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load"] = os.getloadavg()[0]  # other work on the machine stretches wall time
    return result


def main() -> int:
    customers = int(os.environ.get("PERSONA_BENCH_CUSTOMERS", "100000"))
    runs_n = int(os.environ.get("PERSONA_BENCH_RUNS", "3"))
    base = ROOT / "data" / "bench" / f"retrain_{customers}"
    clean_rows = prepare(customers, base)
    run_dir = base / "run"
    whole = []
    for i in range(runs_n):
        fresh_copy(base, run_dir)
        whole.append(_run("retrain", run_dir))
        print(
            f"  retrain run {i + 1}: {whole[-1]['seconds']:.1f}s, peak RSS {whole[-1]['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    per_model: dict[str, list[dict]] = {k: [] for k in KINDS}
    for kind in KINDS:  # on the last run's dir: features built, Feast applied, champions present
        for _ in range(runs_n):
            per_model[kind].append(_run(kind, run_dir))
        print(f"  {kind}: {statistics.median(r['seconds'] for r in per_model[kind]):.1f}s", flush=True)

    med = statistics.median(r["seconds"] for r in whole)
    peak = max(r["peak_rss_mib"] for r in whole)
    steps = {
        name: statistics.median(r["steps"].get(name, float("nan")) for r in whole)
        for name in whole[0]["steps"]
    }
    step_lines = "\n".join(f"| {name} | {sec:.1f} |" for name, sec in steps.items())
    model_lines = "\n".join(
        f"| {kind} | {statistics.median(r['seconds'] for r in rs):.1f} | {statistics.median(r['cpu_s'] for r in rs):.1f} "
        f"| {max(r['peak_rss_mib'] for r in rs):,.0f} |"
        for kind, rs in per_model.items()
    )
    metrics = whole[-1]["metrics"]
    metric_lines = "\n".join(
        f"| {kind} | "
        + " | ".join("" if m.get(k) is None else f"{m[k]:.3f}" for k in ("roc_auc", "pr_auc", "silhouette"))
        + f" | {int(m['n']) if m.get('n') else ''} |"
        for kind, m in metrics.items()
    )
    section = f"""## Retrain (`persona retrain`)

Command: `BENCH=retrain make bench` (`.venv/bin/python -m bench.bench_retrain`). Data: `features.synthetic`
+ `features.ingest`, {customers:,} generated customers ({clean_rows.get("customers", 0):,} clean customers,
{clean_rows.get("orders", 0):,} orders, {clean_rows.get("events", 0) or 0:,} events,
{clean_rows.get("leads", 0) or 0:,} leads). Each run: a fresh child process on a fresh data dir (SQLite MLflow
and Feast registry, DuckDB offline store, SQLite online store). {runs_n} run(s); {os.cpu_count()} cores
shared with other work. {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Aim: under 5 minutes and 4 GB.

| measure | value |
|---|---|
| whole retrain, median (s) | {med:.1f} |
| whole retrain runs (s) | {", ".join(f"{r['seconds']:.1f}" for r in whole)} |
| CPU time (user + sys) of the retrain process, median (s) | {statistics.median(r["cpu_s"] for r in whole):.1f} |
| load average (1 min) when the runs ended | {", ".join(f"{r['load']:.1f}" for r in whole)} |
| peak RSS of the retrain process, max (MiB) | {peak:,.0f} |

| step of the retrain (median s) | seconds |
|---|---|
{step_lines}

| model alone (`train_model`, fresh process) | median s | CPU s | peak RSS MiB |
|---|---|---|---|
{model_lines}

| held-out test window (last run) | ROC-AUC | PR-AUC | silhouette | rows |
|---|---|---|---|---|
{metric_lines}
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(section, encoding="utf-8")
    print(section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())

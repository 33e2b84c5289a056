"""Compare the MLflow runs of two `persona train all` on the same world: every metric of every model's
latest run (one experiment per model) must be identical, and so must the params that are not timings or
paths, and the datasets each run logged as inputs (name, digest, schema, profile, context).

    .venv/bin/python scripts/compare_runs.py data/w20k_old/mlflow/mlflow.db data/w20k/mlflow/mlflow.db
Prints each model's metric count and the first differences; exit 1 on any difference (a metric missing on
one side counts). Params that name a run, a file or a time are left out (`IGNORED_PARAMS`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

IGNORED_PARAMS = ("git_commit", "history_table", "run_", "path", "duration", "seconds", "started", "mlflow.")


def _datasets(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The run's dataset inputs by context (training, validation, ...): what MLflow recorded of each."""
    out = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        d = item.dataset
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
        out[f"dataset[{context}]"] = f"{d.name} {d.digest} {d.source_type} {d.schema} {d.profile}"
    return out


def _latest_runs(db: Path) -> dict[str, tuple[dict[str, float], dict[str, str]]]:
    """Experiment (one per model) -> (metrics, params and logged datasets) of its latest run."""
    from mlflow import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=f"sqlite:///{db.resolve()}")
    out: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
    experiments = [e.experiment_id for e in mlflow_client.search_experiments()]
    for run in mlflow_client.search_runs(
        experiments, order_by=["attributes.start_time ASC"], max_results=5000
    ):
        name = mlflow_client.get_experiment(run.info.experiment_id).name  # run names carry the time
        out[name] = (dict(run.data.metrics), {**run.data.params, **_datasets(run)})
    return out


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def main(old_db: Path, new_db: Path) -> int:
    old, new = _latest_runs(old_db), _latest_runs(new_db)
    bad = 0
    if sorted(old) != sorted(new):
        print(f"runs differ: {sorted(old)} vs {sorted(new)}")
        bad = 1
    for name in sorted(set(old) & set(new)):
        (m_old, p_old), (m_new, p_new) = old[name], new[name]
        metric_diffs = [
            f"{k}: {m_old.get(k)!r} vs {m_new.get(k)!r}"
            for k in sorted(set(m_old) | set(m_new))
            if not _same(m_old.get(k), m_new.get(k))
        ]
        param_diffs = [
            f"{k}: {p_old.get(k)!r} vs {p_new.get(k)!r}"
            for k in sorted(set(p_old) | set(p_new))
            if not any(word in k for word in IGNORED_PARAMS) and p_old.get(k) != p_new.get(k)
        ]
        status = "identical" if not (metric_diffs or param_diffs) else "DIFFERENT"
        print(f"{name}: {len(m_old)} metrics, {len(p_old)} params: {status}")
        for line in (metric_diffs + param_diffs)[:10]:
            print(f"  {line}")
        bad |= bool(metric_diffs or param_diffs)
    return bad


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

"""Model size against held-out quality: how many trees the churn (or CLV) model keeps, what they cost to
fit and to score (with and without TreeSHAP contributions), and what they buy on held-out data.

Runs the training code's own functions on the job's own frames (`training.trainsets.classifier_data` /
`value_data`: labels, the purged time split, point-in-time features from the FeatureService), once per
variant of `training.params`, and writes one JSON of figures per world:

    PERSONA_DATA_DIR=data/n20000 PERSONA_SOURCES__AS_OF=2026-01-01T00:00:00Z \\
        .venv/bin/python scripts/model_size.py --kind churn --out data/model_size/churn_n20000.json
    .venv/bin/python scripts/model_size.py --table data/model_size/churn_n20000.json data/model_size/churn_n100000.json

Metrics are computed on validation (where a choice may be made) and on test (reported, never chosen on),
each with a 95 % bootstrap interval over customers (the same resamples for every variant, so the paired
difference to `default` has its own interval). Classifier metrics are on the calibrated probabilities.
Scoring CPU is the booster alone on one thread, in chunks of 1,000 rows (the figure that multiplies with
the number of customers); fit CPU is the process's CPU time around the fit (LightGBM trains on one
thread by default).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLASSIFIER_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "lr0.1": {"learning_rate": 0.1},
    "lr0.06": {"learning_rate": 0.06},
    "lr0.1_cap300": {"learning_rate": 0.1, "num_boost_round": 300},
    "cap600": {"num_boost_round": 600},
    "cap400": {"num_boost_round": 400},
    "cap200": {"num_boost_round": 200},
    "lr0.06_cap600": {"learning_rate": 0.06, "num_boost_round": 600},
    "leaves31_cap300": {"num_leaves": 31, "num_boost_round": 300},
}
CLV_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "lr0.06": {"learning_rate": 0.06},
    "lr0.1": {"learning_rate": 0.1},
    "cap400": {"num_boost_round": 400},
    "lr0.06_cap600": {"learning_rate": 0.06, "num_boost_round": 600},
}
BOOTSTRAP = 200
SCORE_ROWS = int(os.environ.get("MODEL_SIZE_SCORE_ROWS", "5000"))  # test rows timed per variant
CHUNK = 1000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load_data(kind: str, cache: Path) -> Any:
    """The job's frames, cached per world (the point-in-time retrieval is the slow part)."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    from configs.settings import load_settings
    from features.feast_io import get_store
    from training.trainsets import classifier_data, value_data

    settings = load_settings()
    store = get_store(settings)
    data = (
        classifier_data(settings, kind, store=store) if kind != "clv" else value_data(settings, store=store)
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(data))
    return data


def _weights(ids: pd.Series, *, seed: int, n: int) -> np.ndarray:
    """(n, rows) row weights: each resample draws customers with replacement; a row counts as often as
    its customer was drawn (rows of one customer stay together)."""
    codes, uniques = pd.factorize(ids)
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(codes)), dtype=np.float64)
    for b in range(n):
        drawn = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
        out[b] = drawn[codes]
    return out


def _classifier_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    return {
        "pr_auc": float(average_precision_score(y, p, sample_weight=w)),
        "roc_auc": float(roc_auc_score(y, p, sample_weight=w)),
        "brier": float(np.average((p - y) ** 2, weights=w)),
    }


def _classifier_boot(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """`_classifier_metrics` for every row of `weights` at once (one sort; sklearn's definitions:
    AP as the step sum over distinct thresholds, ROC-AUC by the trapezoid)."""
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # last row of each distinct threshold
    out: dict[str, list[np.ndarray]] = {"pr_auc": [], "roc_auc": [], "brier": []}
    for chunk in np.array_split(weights, max(1, len(weights) // 25)):
        w = chunk[:, order]
        tp = np.cumsum(w * ys, axis=1)[:, last]
        fp = np.cumsum(w * (1 - ys), axis=1)[:, last]
        pos, neg = tp[:, -1:], fp[:, -1:]
        precision = tp / np.maximum(tp + fp, 1e-300)
        recall_step = np.diff(np.c_[np.zeros(len(tp)), tp], axis=1) / pos
        out["pr_auc"].append((recall_step * precision).sum(axis=1))
        tpr, fpr = np.c_[np.zeros(len(tp)), tp / pos], np.c_[np.zeros(len(fp)), fp / neg]
        out["roc_auc"].append(np.trapezoid(tpr, fpr, axis=1))
        out["brier"].append((w * (ps - ys) ** 2).sum(axis=1) / w.sum(axis=1))
    return {k: np.concatenate(v) for k, v in out.items()}


def _value_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    w = np.ones_like(y) if w is None else w
    n_top = int(np.ceil(0.1 * w.sum()))
    order = np.argsort(-p, kind="stable")
    top = np.minimum(np.cumsum(w[order]), n_top) - np.minimum(np.cumsum(w[order]) - w[order], n_top)
    return {
        "mae": float(np.average(np.abs(p - y), weights=w)),
        "capture_top_decile": float((top * y[order]).sum() / (w * y).sum()),
        "total_ratio": float((w * p).sum() / (w * y).sum()),
    }


def _scoring_cpu(booster: Any, x: np.ndarray, *, contrib: bool, repeats: int = 3) -> float:
    """CPU seconds per 1,000 rows, one thread, median of `repeats` passes over `x` in 1,000-row chunks."""
    times = []
    for _ in range(repeats):
        start = _cpu()
        for i in range(0, len(x), CHUNK):
            booster.predict(x[i : i + CHUNK], raw_score=not contrib, pred_contrib=contrib, num_threads=1)
        times.append((_cpu() - start) / (len(x) / CHUNK))
    return float(np.median(times))


def _measure(model_booster: Any, x: np.ndarray) -> dict[str, float]:
    return {
        "score_cpu_ms_per_1000": 1000 * _scoring_cpu(model_booster, x, contrib=False),
        "contrib_cpu_ms_per_1000": 1000 * _scoring_cpu(model_booster, x, contrib=True),
        "load": os.getloadavg()[0],
    }


def _variants(variants: dict[str, dict[str, Any]], parts: Path, fit_one: Any) -> tuple[dict, dict]:
    """Each variant's figures and predictions, kept under `parts` as soon as it is measured (a run that
    is stopped resumes at the next variant)."""
    parts.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {}
    preds: dict[str, dict[str, np.ndarray]] = {}
    for name, params in variants.items():
        done, arrays = parts / f"{name}.json", parts / f"{name}.npz"
        if not (done.exists() and arrays.exists()):
            figures, predicted = fit_one(params)
            np.savez(arrays, **predicted)
            done.write_text(json.dumps({"params": params, **figures}), encoding="utf-8")
            print(name, json.dumps(figures), flush=True)
        stats[name] = json.loads(done.read_text(encoding="utf-8"))
        with np.load(arrays) as z:
            preds[name] = {k: z[k] for k in z.files}
    return stats, preds


def run_classifier(
    data: Any, variants: dict[str, dict[str, Any]], *, seed: int, parts: Path
) -> dict[str, Any]:
    from models.classifier import fit_classifier
    from training.trainsets import LABEL

    out: dict[str, Any] = {"rows": {s: len(getattr(data, s)) for s in ("train", "valid", "test")}}
    out["positive_rate"] = {s: float(getattr(data, s)[LABEL].mean()) for s in ("train", "valid", "test")}

    def fit_one(params: dict[str, Any]) -> tuple[dict, dict]:
        start_cpu, start_wall = _cpu(), time.perf_counter()
        bundle = fit_classifier(
            kind=data.kind,
            train=data.train,
            valid=data.valid,
            features=data.features,
            label=LABEL,
            categorical=data.categorical,
            params=params or None,
            seed=seed,
        )
        fit_cpu, fit_wall = _cpu() - start_cpu, time.perf_counter() - start_wall
        booster = bundle.estimator.booster
        figures = {
            "trees": int(booster.num_trees()),
            "best_iteration": int(bundle.metadata["best_iteration"]),
            "fit_cpu_s": fit_cpu,
            "fit_wall_s": fit_wall,
            **_measure(booster, bundle.encode(data.test.head(SCORE_ROWS))),
        }
        return figures, {s: bundle.predict_proba(getattr(data, s)) for s in ("valid", "test")}

    out["variants"], preds = _variants(variants, parts, fit_one)
    _intervals(out, data, preds, _classifier_metrics, _classifier_boot, seed=seed)
    return out


def run_clv(data: Any, variants: dict[str, dict[str, Any]], *, seed: int, parts: Path) -> dict[str, Any]:
    from models.clv import fit_btyd_value, fit_clv_regressor
    from training.trainsets import LABEL

    out: dict[str, Any] = {"rows": {s: len(getattr(data, s)) for s in ("train", "valid", "test")}}
    last = data.train["event_timestamp"].max()
    btyd = fit_btyd_value(data.train[data.train["event_timestamp"] == last], horizon_days=data.horizon_days)

    def fit_one(params: dict[str, Any]) -> tuple[dict, dict]:
        start_cpu, start_wall = _cpu(), time.perf_counter()
        model = fit_clv_regressor(
            train=data.train,
            valid=data.valid,
            features=data.features,
            label=LABEL,
            horizon_days=data.horizon_days,
            offset=btyd,
            categorical=data.categorical,
            seed=seed,
            params=params or None,
        )
        fit_cpu, fit_wall = _cpu() - start_cpu, time.perf_counter() - start_wall
        # the booster keeps the early-stopping patience past its best iteration; predictions (and
        # contributions) stop at best_iteration, so that is the model's size where it counts
        figures = {
            "trees": int(model.metadata["best_iteration"]),
            "trees_stored": int(model.booster.num_trees()),
            "best_iteration": int(model.metadata["best_iteration"]),
            "fit_cpu_s": fit_cpu,
            "fit_wall_s": fit_wall,
            **_measure(model.booster, model.encode(data.test.head(SCORE_ROWS))),
        }
        return figures, {s: model.predict(getattr(data, s)) for s in ("valid", "test")}

    out["variants"], preds = _variants(variants, parts, fit_one)
    _intervals(out, data, preds, _value_metrics, _value_boot, seed=seed)
    return out


def _value_boot(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """`_value_metrics` for every row of `weights` at once."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    out: dict[str, list[np.ndarray]] = {"mae": [], "capture_top_decile": [], "total_ratio": []}
    for chunk in np.array_split(weights, max(1, len(weights) // 25)):
        w = chunk[:, order]
        n_top = np.ceil(0.1 * w.sum(axis=1, keepdims=True))
        cum = np.cumsum(w, axis=1)
        top = np.minimum(cum, n_top) - np.minimum(cum - w, n_top)
        spent = (w * ys).sum(axis=1)
        out["mae"].append((w * np.abs(ps - ys)).sum(axis=1) / w.sum(axis=1))
        out["capture_top_decile"].append((top * ys).sum(axis=1) / spent)
        out["total_ratio"].append((w * ps).sum(axis=1) / spent)
    return {k: np.concatenate(v) for k, v in out.items()}


def _intervals(out: dict, data: Any, preds: dict, metric_fn: Any, boot_fn: Any, *, seed: int) -> None:
    """Point metric, 95 % interval, and the paired difference to `default` with its interval."""
    from training.trainsets import LABEL

    for split in ("valid", "test"):
        frame = getattr(data, split)
        y = frame[LABEL].to_numpy(dtype=np.float64)
        weights = _weights(frame["customer_id"], seed=seed, n=BOOTSTRAP)
        boot = {n: boot_fn(y, p[split], weights) for n, p in preds.items()}
        base = metric_fn(y, preds["default"][split]) if "default" in preds else None
        for name, p in preds.items():
            point = metric_fn(y, p[split])
            row = {}
            for metric, value in point.items():
                draws = boot[name][metric]
                row[metric] = [value, *np.percentile(draws, [2.5, 97.5]).tolist()]
                if base is not None and name != "default":
                    diff = draws - boot["default"][metric]
                    row[f"{metric}_vs_default"] = [
                        value - base[metric],
                        *np.percentile(diff, [2.5, 97.5]).tolist(),
                    ]
            out["variants"][name][split] = row


def table(paths: list[Path]) -> str:
    """Markdown table of one or more result files."""
    lines = []
    for path in paths:
        res = json.loads(path.read_text(encoding="utf-8"))
        lines.append(f"\n{path.name}: rows {res['rows']}")
        first = next(iter(res["variants"].values()))
        metrics = [m for m in first["test"] if not m.endswith("_vs_default")]
        head = ["variant", "trees", "fit CPU s", "score ms/1k", "+contrib ms/1k"]
        head += [f"valid {m}" for m in metrics] + [f"test {m}" for m in metrics]
        head += [f"valid Δ{m}" for m in metrics] + [f"test Δ{m}" for m in metrics]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, v in res["variants"].items():

            def ci(cell: list[float]) -> str:
                return f"{cell[0]:.4f} [{cell[1]:.4f}, {cell[2]:.4f}]"

            cells = [
                name,
                str(v["trees"]),
                f"{v['fit_cpu_s']:.0f}",
                f"{v['score_cpu_ms_per_1000']:.1f}",
                f"{v['contrib_cpu_ms_per_1000']:.0f}",
            ]
            cells += [ci(v["valid"][m]) for m in metrics] + [ci(v["test"][m]) for m in metrics]
            for split in ("valid", "test"):
                cells += [
                    ci(v[split][f"{m}_vs_default"]) if f"{m}_vs_default" in v[split] else "" for m in metrics
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="churn", choices=["churn", "conversion", "clv"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--variants", default="", help="comma-separated names (default: all)")
    parser.add_argument(
        "--parts", type=Path, help="folder of per-variant results (default: beside --out); shared by runs"
    )
    parser.add_argument("--table", nargs="+", type=Path, help="print the table of result files and exit")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    if args.out is None:
        parser.error("--out is required")
    known = CLV_VARIANTS if args.kind == "clv" else CLASSIFIER_VARIANTS
    names = [n for n in args.variants.split(",") if n] or list(known)
    variants = {n: known[n] for n in names}
    data = _load_data(args.kind, (args.parts or args.out.with_suffix(".parts")).with_suffix(".frames.pkl"))
    from configs.settings import load_settings

    seed = load_settings().training.seed
    run = run_clv if args.kind == "clv" else run_classifier
    result = run(data, variants, seed=seed, parts=args.parts or args.out.with_suffix(".parts"))
    result["kind"] = args.kind
    result["data_dir"] = os.environ.get("PERSONA_DATA_DIR", "")
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(table([args.out]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

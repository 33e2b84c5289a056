"""Model fit cost and scoring latency on synthetic customer features.

Fit time and peak memory (max RSS of a child process doing only that fit) at 100,000 rows for LightGBM,
the logistic baseline and k-means segmentation; in-process scoring latency of one row and 1,000 rows on
the fast path (`predict_proba_array`, encoded float matrix) and the DataFrame path (`predict_proba`).

Run: `BENCH=models make bench` (or `python -m bench.bench_models`). Writes bench/results/models.md.
`BENCH_RUNS` (default 3) sets the number of fit runs per model.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "models.md"
ROWS = 100_000
SEED = 7
CATEGORICAL = ["region", "acquisition_channel"]
SEGMENT_FEATURES = ["recency_days", "frequency_365d", "monetary_365d", "tenure_days", "visits_90d"]


def synthetic(n: int, seed: int) -> pd.DataFrame:
    """Customer-like features (skewed counts and money, missing engagement) with a churn label."""
    rng = np.random.default_rng(seed)
    f = {}
    f["recency_days"] = rng.exponential(80, n)
    for w, lam in ((30, 0.5), (90, 1.5), (365, 6)):
        f[f"frequency_{w}d"] = rng.poisson(lam, n).astype(float)
        f[f"monetary_{w}d"] = f[f"frequency_{w}d"] * rng.lognormal(3.5, 0.8, n)
    f["avg_order_value_365d"] = f["monetary_365d"] / np.maximum(f["frequency_365d"], 1)
    f["return_rate_365d"] = rng.beta(1, 12, n)
    f["discount_rate_365d"] = rng.beta(2, 8, n)
    f["tenure_days"] = rng.uniform(0, 900, n)
    f["visits_30d"] = rng.poisson(2, n).astype(float)
    f["visits_90d"] = f["visits_30d"] + rng.poisson(4, n)
    f["email_opens_90d"] = rng.poisson(3, n).astype(float)
    f["email_clicks_90d"] = rng.binomial(f["email_opens_90d"].astype(int), 0.3).astype(float)
    f["support_tickets_90d"] = rng.poisson(0.3, n).astype(float)
    f["complaints_90d"] = rng.poisson(0.05, n).astype(float)
    f["days_since_last_event"] = rng.exponential(30, n)
    frame = pd.DataFrame(f)
    frame.loc[rng.random(n) < 0.1, ["visits_30d", "visits_90d", "days_since_last_event"]] = np.nan
    frame["region"] = rng.choice(["north", "south", "east", "west", "centre"], n)
    frame["acquisition_channel"] = rng.choice(["web", "store", "referral", "ads"], n)
    logit = (
        -2.5
        + 0.012 * frame["recency_days"]
        - 0.2 * frame["frequency_365d"]
        + 0.8 * frame["complaints_90d"]
        - 0.05 * frame["visits_30d"].fillna(0)
    )
    frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


# The numeric columns are the ones `synthetic` builds (derived, so the list cannot drift from it).
NUMERIC = [c for c in synthetic(2, 0).columns if c not in {*CATEGORICAL, "churned"}]


def _splits(n: int):
    return synthetic(n, SEED), synthetic(n // 4, SEED + 1)


def _fit(model: str, n: int):
    from models.classifier import fit_baseline, fit_classifier
    from models.segmentation import fit_segmentation

    train, valid = _splits(n)
    common = {
        "kind": "churn",
        "train": train,
        "valid": valid,
        "features": NUMERIC + CATEGORICAL,
        "label": "churned",
        "categorical": CATEGORICAL,
        "seed": SEED,
    }
    started = time.perf_counter()
    if model == "lightgbm":
        fitted = fit_classifier(**common)
        extra = {"best_iteration": fitted.metadata["best_iteration"]}
    elif model == "logistic":
        fit_baseline(**common)
        extra = {}
    elif model == "segmentation":
        fit_segmentation(X=train, features=SEGMENT_FEATURES, k=6, k_range=(3, 8), seed=SEED)
        extra = {}
    elif model == "segmentation_auto_k":
        fitted = fit_segmentation(X=train, features=SEGMENT_FEATURES, k=None, k_range=(3, 8), seed=SEED)
        extra = {"k": fitted.k}
    else:
        raise SystemExit(f"unknown model {model}")
    return time.perf_counter() - started, extra


def _child(model: str) -> None:
    if model == "imports":  # the floor every child pays: interpreter + numpy/pandas/sklearn/lightgbm
        import lightgbm  # noqa: F401
        import sklearn.cluster  # noqa: F401

        import models.classifier  # noqa: F401

        print(json.dumps({"seconds": 0.0}))
        return
    seconds, extra = _fit(model, ROWS)
    print(json.dumps({"seconds": seconds, **extra}))


def _run_child(model: str) -> tuple[dict, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_models", "--child", model], stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {model} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024  # Linux: KiB -> MiB


def _latency(fn, repeats: int) -> tuple[float, float]:
    for _ in range(min(20, repeats)):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), float(np.percentile(times, 99))


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    fit_rows = []
    _, import_rss = _run_child("imports")
    for model in ("lightgbm", "logistic", "segmentation", "segmentation_auto_k"):
        seconds, rss, extras = [], [], {}
        for i in range(runs if model != "segmentation_auto_k" else 1):
            print(f"  fit {model} run {i + 1}", flush=True)
            result, peak = _run_child(model)
            seconds.append(result.pop("seconds"))
            rss.append(peak)
            extras = result
        note = ", ".join(f"{k} {v}" for k, v in extras.items())
        fit_rows.append(
            f"| {model} | {len(seconds)} | {statistics.median(seconds):.2f} | {max(seconds):.2f} "
            f"| {statistics.median(rss):.0f} | {note} |"
        )

    from models.classifier import fit_baseline, fit_classifier
    from models.segmentation import fit_segmentation

    train, valid = _splits(ROWS)
    common = {
        "kind": "churn",
        "train": train,
        "valid": valid,
        "features": NUMERIC + CATEGORICAL,
        "label": "churned",
        "categorical": CATEGORICAL,
        "seed": SEED,
    }
    scoring = synthetic(1000, SEED + 2)
    lat_rows = []
    for name, bundle in (("lightgbm", fit_classifier(**common)), ("logistic", fit_baseline(**common))):
        one_frame, many_frame = scoring.iloc[[0]], scoring
        one_array, many_array = bundle.encode(one_frame), bundle.encode(many_frame)
        for label, fn, reps in (
            ("predict_proba_array, 1 row", lambda b=bundle, x=one_array: b.predict_proba_array(x), 3000),
            ("predict_proba (DataFrame), 1 row", lambda b=bundle, x=one_frame: b.predict_proba(x), 1000),
            ("predict_proba_array, 1,000 rows", lambda b=bundle, x=many_array: b.predict_proba_array(x), 200),
            ("predict_proba (DataFrame), 1,000 rows", lambda b=bundle, x=many_frame: b.predict_proba(x), 100),
            ("reasons (top 3), 1 row", lambda b=bundle, x=one_frame: b.reasons(x), 500),
        ):
            med, p99 = _latency(fn, reps)
            lat_rows.append(f"| {name} | {label} | {reps} | {med:.4f} | {p99:.4f} |")
    seg = fit_segmentation(X=train, features=SEGMENT_FEATURES, k=6, k_range=(3, 8), seed=SEED)
    med, p99 = _latency(lambda: seg.predict(scoring.iloc[[0]]), 1000)
    lat_rows.append(f"| segmentation | predict (DataFrame), 1 row | 1000 | {med:.4f} | {p99:.4f} |")

    text = "\n".join(
        [
            "## Models: fit cost and scoring latency (synthetic features)",
            "",
            f"Command: `BENCH=models make bench` (`python -m bench.bench_models`), BENCH_RUNS={runs}. Fit: "
            f"{ROWS:,} training rows + {ROWS // 4:,} validation rows, {len(NUMERIC)} numeric + {len(CATEGORICAL)} "
            "categorical features; each run in its own process, peak memory = that process's max RSS "
            f"(imports alone: {import_rss:.0f} MiB). Machine shared with other jobs: treat times as upper bounds.",
            "",
            "| model | runs | fit s (median) | fit s (max) | peak RSS MiB (median) | notes |",
            "|---|---|---|---|---|---|",
            *fit_rows,
            "",
            "Scoring latency in process (ms), model fitted on the rows above, scoring rows from another sample:",
            "",
            "| model | call | repeats | median ms | p99 ms |",
            "|---|---|---|---|---|",
            *lat_rows,
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
        sys.exit(0)
    sys.exit(main())

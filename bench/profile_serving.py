"""Where a `/v1/score` request spends its time, in process (no HTTP): `Scorer.score`, the metrics and the
encoding of the answer as the service does them (`ServiceMetrics.answered`, `response_json`), on the world
bench_serving.py built (`data/bench/serving_<N>/`), for 1 customer (explain default: true) and for
1,000 customers with explain false (the default above `serving.explain_up_to`) and true.

The whole call is timed without a profiler (median thread CPU of many calls: less disturbed by other work
on a shared machine than wall time); then one cProfile pass, on the thread's CPU clock, gives each stage's
share (cumulative time of the stage's function / the whole call's, both under the profiler, so the
profiler's own overhead is spread over the stages). SQLite's and LightGBM's C calls are stages too. Not
part of `make bench` (run by hand):

    .venv/bin/python -m bench.profile_serving          # after BENCH=serving make bench built the world

Over HTTP, the rest of a request is BentoML's own (the `/v1/noop` floor): a sampling profiler attached to
a worker (py-spy, not a dependency) splits it.
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, file suffix or ~ for a C function, function name) of the stages of a scoring call
STAGES = (
    ("Feast online read (one query per view)", "features/feast_io.py", "online_features"),
    # a bulk read runs half of its views on the reader thread, whose CPU is not this thread's
    ("  of which SQLite executing (this thread)", "~", "<method 'execute' of 'sqlite3.Connection' objects>"),
    ("  of which decoding Feast's values (columnar: bulk)", "features/online_decode.py", "numeric_column"),
    ("models (run_models)", "serving/scoring.py", "run_models"),
    ("  of which LightGBM single-row C calls (raw, TreeSHAP)", "models/single_row.py", "__call__"),
    (
        "  of which LightGBM churn/conversion + contributions",
        "models/classifier.py",
        "predict_with_contributions",
    ),
    ("  of which LightGBM churn/conversion, no contributions", "models/classifier.py", "predict_proba_array"),
    ("  of which reasons in words (tag churn_reasons)", "serving/scoring.py", "_reasons_in_words"),
    ("  of which segments", "models/segmentation.py", "predict_columns"),
    ("  of which value (CLV)", "models/clv.py", "predict_columns"),
    ("  of which next best (top items)", "models/recommend.py", "scores_of"),
    ("  of which populations", "serving/scoring.py", "mask"),
    ("  of which input encoding (classifiers and value)", "models/classifier.py", "encode_columns"),
    ("value reasons (explain)", "models/clv.py", "reasons_columns"),
    ("recommendation lists with reasons", "serving/scoring.py", "_recommendations"),
    ("tags (catalog)", "serving/scoring.py", "evaluate_tags"),
    ("feature freshness per view", "serving/scoring.py", "_freshness"),
    ("metrics (ServiceMetrics.answered)", "serving/metrics.py", "answered"),
    ("JSON encoding of the answer (response_json)", "serving/schemas.py", "response_json"),
)


def main() -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.path.insert(0, str(ROOT))
    from prometheus_client import CollectorRegistry

    from bench.bench_serving import customer_ids
    from configs.settings import load_settings
    from serving.metrics import ServiceMetrics
    from serving.schemas import response_json
    from serving.scoring import Scorer, load_state

    customers = int(os.environ.get("PERSONA_BENCH_SERVING_CUSTOMERS", "5000"))
    world = ROOT / "data" / "bench" / f"serving_{customers}"
    if not (world / ".built").is_file():
        raise SystemExit(f"profile_serving: no world in {world}: run BENCH=serving make bench first")
    active, eligible = customer_ids(world)
    scorer = Scorer(load_state(load_settings(data_dir=str(world))))
    gc.collect()
    gc.freeze()  # as the service does once loaded
    print(f"models {scorer.state.versions}; load average {os.getloadavg()[0]:.2f}")
    now = datetime.now(UTC)
    rng = random.Random(3)

    metrics = ServiceMetrics(CollectorRegistry())  # a registry of its own: nothing global is touched

    def call(ids: list[str], explain: bool | None) -> None:
        payload = scorer.score(ids, write_back=False, now=now, explain=explain)
        metrics.answered("score", payload)
        response_json(payload)

    for n, pool, runs, explain in (
        (1, active, 300, None),
        (1000, eligible, 10, False),
        (1000, eligible, 10, True),
    ):
        for _ in range(10 if n == 1 else 2):
            call(rng.sample(pool, n), explain)
        times = []
        for _ in range(runs):
            ids = rng.sample(pool, n)
            started = time.thread_time()
            call(ids, explain)
            times.append((time.thread_time() - started) * 1000)
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        for _ in range(runs):
            call(rng.sample(pool, n), explain)
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        total = sum(
            ct
            for (f, _, name), (_, _, _, ct, _) in stats.items()
            if name == "call" and f.endswith("bench/profile_serving.py")
        )
        print(
            f"\n{n} customer(s), explain {'default' if explain is None else explain}: "
            f"score + metrics + encoding, thread CPU median {statistics.median(times):.2f} ms "
            f"(p99 {sorted(times)[int(0.99 * (len(times) - 1))]:.2f} ms, {runs} calls; "
            f"load average {os.getloadavg()[0]:.1f})"
        )
        for label, suffix, func in STAGES:
            # max, not sum: a model and the model it wraps (the value model's offset) share the name,
            # and the outer one's cumulative time already holds the inner one's
            cum = max(
                (
                    ct
                    for (f, _, name), (_, _, _, ct, _) in stats.items()
                    if name == func and (f.endswith(suffix) or suffix == "~")  # ~: a C function
                ),
                default=0.0,
            )
            print(f"  {label:<55} {cum / total:6.1%}  (~{statistics.median(times) * cum / total:.2f} ms)")
    gc.unfreeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a `/v1/score` request spends its time, in process (no HTTP): `Scorer.score` on the world
bench_serving.py built (`data/bench/serving_<N>/`), for 1 customer (explain default: true) and for
1,000 customers with explain false (the default above `serving.explain_up_to`) and true.

The whole call is timed without a profiler (median of many calls); then one cProfile pass gives each
stage's share (cumulative time of the stage's function / the whole call's, both under the profiler, so
the profiler's own overhead is spread over the stages). Not part of `make bench` (run by hand):

    .venv/bin/python -m bench.profile_serving          # after BENCH=serving make bench built the world
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import pstats
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, file suffix, function name) of the stages of Scorer.score
STAGES = (
    ("Feast online read (one query per view)", "features/feast_io.py", "online_features"),
    ("models (run_models)", "serving/scoring.py", "run_models"),
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
    ("JSON encoding of the answer", "json/__init__.py", "dumps"),
)


def main() -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.path.insert(0, str(ROOT))
    from bench.bench_serving import customer_ids
    from configs.settings import load_settings
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

    def call(ids: list[str], explain: bool | None) -> None:
        json.dumps(scorer.score(ids, write_back=False, now=now, explain=explain), allow_nan=False)

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
            started = time.perf_counter()
            call(ids, explain)
            times.append((time.perf_counter() - started) * 1000)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(runs):
            call(rng.sample(pool, n), explain)
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        total = sum(
            ct
            for (f, _, name), (_, _, _, ct, _) in stats.items()
            if name == "score" and f.endswith("serving/scoring.py")
        )
        print(
            f"\n{n} customer(s), explain {'default' if explain is None else explain}: "
            f"Scorer.score + json.dumps median {statistics.median(times):.2f} ms "
            f"(p99 {sorted(times)[int(0.99 * (len(times) - 1))]:.2f} ms, {runs} calls)"
        )
        for label, suffix, func in STAGES:
            # max, not sum: a model and the model it wraps (the value model's offset) share the name,
            # and the outer one's cumulative time already holds the inner one's
            cum = max(
                (
                    ct
                    for (f, _, name), (_, _, _, ct, _) in stats.items()
                    if name == func and f.endswith(suffix)
                ),
                default=0.0,
            )
            print(f"  {label:<55} {cum / total:6.1%}  (~{statistics.median(times) * cum / total:.2f} ms)")
    gc.unfreeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())

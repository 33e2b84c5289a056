"""One customer in process, two code trees side by side: `Scorer.score` + `json.dumps` of the same
sequence of customers, in blocks alternating between a process running the old tree and one running this
tree, on the same world (`data/bench/serving_<N>/`, built by `BENCH=serving make bench`). Medians of wall
and thread CPU time (the CPU time is less disturbed by other work on a shared machine), with the load
average. Not part of `make bench` (run by hand):

    git archive main | tar -x -C data/ref          # the tree to compare with (read-only copy)
    .venv/bin/python -m bench.ab_one_customer data/ref
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(world: Path) -> None:
    """Run in a code tree's directory: load the scorer, then answer `<calls>` lines with timings."""
    import gc
    from datetime import UTC, datetime

    sys.path.insert(0, os.getcwd())
    from bench.bench_serving import customer_ids
    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    active, _ = customer_ids(world)
    scorer = Scorer(load_state(load_settings(data_dir=str(world))))
    gc.collect()
    gc.freeze()  # as the service does once loaded
    now, rng = datetime.now(UTC), random.Random(7)  # both trees score the same customers in turn

    def call() -> None:
        json.dumps(scorer.score(rng.sample(active, 1), write_back=False, now=now), allow_nan=False)

    for _ in range(30):
        call()
    import serving.scoring

    print("ready", serving.scoring.__file__, flush=True)
    for line in sys.stdin:
        out = []
        for _ in range(int(line)):
            wall, cpu = time.perf_counter(), time.thread_time()
            call()
            out.append(((time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3))
        print(json.dumps(out), flush=True)


def main(old_tree: Path) -> int:
    customers = int(os.environ.get("PERSONA_BENCH_SERVING_CUSTOMERS", "5000"))
    world = ROOT / "data" / "bench" / f"serving_{customers}"
    if not (world / ".built").is_file():
        raise SystemExit(f"ab_one_customer: no world in {world}: run BENCH=serving make bench first")
    rounds, block = int(os.environ.get("ROUNDS", "10")), int(os.environ.get("BLOCK", "50"))
    procs = {}
    for name, tree in (("old", old_tree.resolve()), ("new", ROOT)):
        procs[name] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(world)],
            cwd=tree,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = procs[name].stdout.readline().split()  # type: ignore[union-attr]
        assert ready[:1] == ["ready"], f"{name} tree did not load"
        print(f"{name}: {ready[1]}")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in procs}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            proc = procs[name]
            proc.stdin.write(f"{block}\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            times[name] += [tuple(t) for t in json.loads(proc.stdout.readline())]  # type: ignore[union-attr,misc]
        loads.append(os.getloadavg()[0])
    for proc in procs.values():
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()
    medians = {}
    for name, got in times.items():
        wall, cpu = sorted(t[0] for t in got), sorted(t[1] for t in got)
        medians[name] = (statistics.median(wall), statistics.median(cpu))
        print(
            f"{name}: {len(got)} calls, wall median {medians[name][0]:.2f} ms "
            f"(p99 {wall[int(0.99 * (len(wall) - 1))]:.2f}), thread CPU median {medians[name][1]:.2f} ms"
        )
    print(
        f"new/old: wall {medians['new'][0] / medians['old'][0]:.2f}, CPU {medians['new'][1] / medians['old'][1]:.2f}; "
        f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]))
    else:
        sys.exit(main(Path(sys.argv[1])))

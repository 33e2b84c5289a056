"""1,000 customers in one request over HTTP, two code trees side by side: a real server of the old tree
and one of this tree on the same world (`data/bench/serving_<N>/`, built by `BENCH=serving make bench`),
called in turn by one keep-alive client with the same random 1,000 ids, without and with `explain`.
Medians and p99 per tree, with the load average. Not part of `make bench` (run by hand):

    git archive main | tar -x -C data/ref          # the tree to compare with (read-only copy)
    .venv/bin/python -m bench.ab_bulk data/ref     # ROUNDS (default 15), PORT (first port, 18100)
    .venv/bin/python -m bench.ab_bulk --in-process data/ref   # ROUNDS (10) x BLOCK (3) calls each

Each server is BentoML with the configured workers, its own BENTOML_HOME, the dispatcher off, and the
tree's own code first on the path (PYTHONPATH and `--working-dir`).

`--in-process`: the same comparison without HTTP, `Scorer.score` + the tree's encoding of the answer in
one process per tree, wall and CPU time of the whole process (less disturbed by other work than the wall
time; the process's, not the thread's, so the SQLite reader thread and LightGBM's threads count too).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "ab-bulk-key-0123456789abcdef"
SIZE = 1000


def start(tree: Path, world: Path, port: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` of `tree` on `port` (what `persona serve` execs), not waiting for it."""
    from bench.bench_serving import _env

    env = {
        **_env(world),
        "PYTHONPATH": str(tree),
        "PERSONA_API_KEYS": API_KEY,
        "PERSONA_SERVING__DISPATCH_IN_SERVICE": "false",
        "PERSONA_SERVING__BENCHMARK_ENDPOINT": "true",
        "BENTOML_HOME": str(tmp / f"bentoml-{port}"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    proc = subprocess.Popen(
        [str(bentoml), "serve", "serving.service:PersonaService", "--host", "127.0.0.1", "--port", str(port)]
        + ["--working-dir", str(tree)],
        cwd=tree,
        env=env,
        stdout=(tmp / f"serve-{port}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, base: str, log: Path) -> None:
    """Until /readyz answers 200 (10 minutes at most: loading is slow on a busy machine)."""
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ab_bulk: server {base} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"ab_bulk: server {base} not ready in 600 s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def main(old_tree: Path) -> int:
    import httpx

    from bench.bench_serving import customer_ids

    customers = int(os.environ.get("PERSONA_BENCH_SERVING_CUSTOMERS", "5000"))
    world = ROOT / "data" / "bench" / f"serving_{customers}"
    if not (world / ".built").is_file():
        raise SystemExit(f"ab_bulk: no world in {world}: run BENCH=serving make bench first")
    rounds, port = int(os.environ.get("ROUNDS", "15")), int(os.environ.get("PORT", "18100"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its servers
    _, eligible = customer_ids(world)
    size = min(SIZE, len(eligible))
    trees = {"old": old_tree.resolve(), "new": ROOT}
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    with tempfile.TemporaryDirectory(prefix="ab-bulk-") as tmp:
        try:
            for i, (name, tree) in enumerate(trees.items()):  # both load at once
                servers[name] = start(tree, world, port + i, Path(tmp))
            for i, (name, (proc, base)) in enumerate(servers.items()):
                wait_ready(proc, base, Path(tmp) / f"serve-{port + i}.log")
                print(f"{name}: {trees[name]} on {base}", flush=True)
            clients = {
                name: httpx.Client(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
                for name, (_, base) in servers.items()
            }
            rng = random.Random(5)
            modes = (False, True, None)  # explain false, true; None: /v1/noop, BentoML's own floor
            times: dict[tuple[str, bool | None], list[float]] = {(n, e): [] for n in trees for e in modes}
            sizes: dict[tuple[str, bool | None], int] = {}
            loads = [os.getloadavg()[0]]
            for r in range(rounds + 2):  # the first two rounds warm up
                for explain in modes:
                    ids = rng.sample(eligible, size)
                    body = (
                        {"customer_ids": ids}
                        if explain is None
                        else {"customer_ids": ids, "explain": explain}
                    )
                    path = "/v1/noop" if explain is None else "/v1/score"
                    for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                        started = time.perf_counter()
                        answer = clients[name].post(path, json=body)
                        ms = (time.perf_counter() - started) * 1e3
                        if answer.status_code != 200:
                            raise SystemExit(
                                f"ab_bulk: {name} answered {answer.status_code}: {answer.text[:300]}"
                            )
                        sizes[(name, explain)] = len(answer.content)
                        if r >= 2:
                            times[(name, explain)].append(ms)
                loads.append(os.getloadavg()[0])
            for client in clients.values():
                client.close()
        finally:
            for proc, _ in servers.values():
                stop(proc)
    for explain in modes:
        medians = {}
        for name in trees:
            got = sorted(times[(name, explain)])
            medians[name] = statistics.median(got)
            print(
                f"{size} customers, {'/v1/noop' if explain is None else f'explain {str(explain).lower()}':<13} "
                f"{name}: {len(got)} requests, median "
                f"{medians[name]:.1f} ms, p99 {got[int(0.99 * (len(got) - 1))]:.1f} ms, "
                f"{sizes[(name, explain)] / 1e6:.2f} MB"
            )
        print(f"  new/old median: {medians['new'] / medians['old']:.2f}")
    print(
        f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    return 0


def worker(world: Path) -> None:
    """Run in a code tree's directory: load the scorer, then answer `<calls> <explain>` lines with
    (wall ms, process CPU ms) of score + encode for random 1,000-id requests."""
    import gc
    import json
    from datetime import UTC, datetime

    sys.path.insert(0, os.getcwd())
    import serving.schemas
    from bench.bench_serving import customer_ids
    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    _, eligible = customer_ids(world)
    scorer = Scorer(load_state(load_settings(data_dir=str(world))))
    gc.collect()
    gc.freeze()  # as the service does once loaded
    # what the tree's service sends: its own encoder where it has one, else json.dumps as before
    encode = getattr(serving.schemas, "response_json", None) or (
        lambda p: json.dumps(p, allow_nan=False).encode("utf-8")
    )
    now, rng = datetime.now(UTC), random.Random(7)  # both trees score the same customers in turn
    size = min(SIZE, len(eligible))
    for _ in range(2):
        encode(scorer.score(rng.sample(eligible, size), write_back=False, now=now, explain=False))
    print("ready", serving.schemas.__file__, flush=True)
    for line in sys.stdin:
        calls, explain = line.split()
        out = []
        for _ in range(int(calls)):
            ids = rng.sample(eligible, size)
            wall, cpu = time.perf_counter(), time.process_time()
            encode(scorer.score(ids, write_back=False, now=now, explain=explain == "1"))
            out.append(((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
        print(json.dumps(out), flush=True)


def in_process(old_tree: Path) -> int:
    import json

    customers = int(os.environ.get("PERSONA_BENCH_SERVING_CUSTOMERS", "5000"))
    world = ROOT / "data" / "bench" / f"serving_{customers}"
    rounds, block = int(os.environ.get("ROUNDS", "10")), int(os.environ.get("BLOCK", "3"))
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
        print(f"{name}: {ready[1]}", flush=True)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(n, e): [] for n in procs for e in "01"}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        for explain in "01":
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                proc = procs[name]
                proc.stdin.write(f"{block} {explain}\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                got = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
                times[(name, explain)] += [(w, c) for w, c in got]
        loads.append(os.getloadavg()[0])
    for proc in procs.values():
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()
    for explain in "01":
        medians = {}
        for name in procs:
            got = times[(name, explain)]
            medians[name] = (
                statistics.median(t[0] for t in got),
                statistics.median(t[1] for t in got),
            )
            print(
                f"in process, {SIZE} customers, explain {'true' if explain == '1' else 'false'} {name}: "
                f"{len(got)} calls, wall median {medians[name][0]:.1f} ms, process CPU median {medians[name][1]:.1f} ms"
            )
        print(
            f"  new/old: wall {medians['new'][0] / medians['old'][0]:.2f}, "
            f"CPU {medians['new'][1] / medians['old'][1]:.2f}"
        )
    print(
        f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--in-process"]:
        sys.exit(in_process(Path(sys.argv[2])))
    else:
        sys.exit(main(Path(sys.argv[1])))

"""One customer in process, two code trees side by side: `Scorer.score` + `json.dumps` of the same
sequence of customers, in blocks alternating between a process running the old tree and one running this
tree, on the same world (`data/bench/serving_<N>/`, built by `BENCH=serving make bench`). Medians of wall
and thread CPU time (the CPU time is less disturbed by other work on a shared machine), with the load
average. Not part of `make bench` (run by hand):

    git archive main | tar -x -C data/ref          # the tree to compare with (read-only copy)
    .venv/bin/python -m bench.ab_one_customer data/ref
    .venv/bin/python -m bench.ab_one_customer --http data/ref     # the same over HTTP (see `http_main`)
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


def _serve(tree: Path, world: Path, port: int, log: Path) -> subprocess.Popen:
    """A real server of `tree` (its own process group, dispatcher off, /v1/noop on), as `persona serve`
    starts it: `bentoml serve` with the tree as working directory."""
    from bench.bench_serving import API_KEY, _env

    env = {
        **_env(world),
        "PERSONA_API_KEYS": API_KEY,
        "PERSONA_SERVING__DISPATCH_IN_SERVICE": "false",
        "PERSONA_SERVING__BENCHMARK_ENDPOINT": "true",
        "BENTOML_HOME": str(log.parent / f"bentoml-{port}"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    args = [bentoml, "serve", "serving.service:PersonaService", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*args, "--working-dir", str(tree)],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def http_main(old_tree: Path) -> int:
    """Over HTTP: one server per tree (ports `AB_PORT` and the next, default 18210), one customer per
    request, sequential; in each block /v1/score and /v1/noop alternate call by call, and blocks alternate
    between the two servers. p50/p99 of each route, score p99 / noop p99, load average. Then `CLIENTS`
    concurrent clients (default 8): requests per second of each route, runs alternating."""
    import httpx

    from bench.bench_serving import AUTH, Result, concurrent, customer_ids, stop_server

    customers = int(os.environ.get("PERSONA_BENCH_SERVING_CUSTOMERS", "5000"))
    world = ROOT / "data" / "bench" / f"serving_{customers}"
    rounds, block = int(os.environ.get("ROUNDS", "10")), int(os.environ.get("BLOCK", "60"))
    port = int(os.environ.get("AB_PORT", "18210"))
    active, _ = customer_ids(world)
    logs = ROOT / "data" / "ab_http"
    logs.mkdir(parents=True, exist_ok=True)
    trees = {"old": old_tree.resolve(), "new": ROOT}
    servers = {
        name: _serve(tree, world, port + i, logs / f"{name}.log")
        for i, (name, tree) in enumerate(trees.items())
    }
    bases = {name: f"http://127.0.0.1:{port + i}" for i, name in enumerate(trees)}
    try:
        from bench.ab_bulk import wait_ready

        for name, base in bases.items():
            wait_ready(servers[name], base, logs / f"{name}.log")
        clients = {
            name: httpx.Client(base_url=base, headers=AUTH, timeout=30) for name, base in bases.items()
        }
        rng = random.Random(11)
        times: dict[tuple[str, str], list[float]] = {(n, r): [] for n in trees for r in ("score", "noop")}

        def post(name: str, route: str) -> float:
            started = time.perf_counter()
            answer = clients[name].post(f"/v1/{route}", json={"customer_ids": [rng.choice(active)]})
            ms = (time.perf_counter() - started) * 1e3
            if answer.status_code != 200:
                raise SystemExit(f"{name} /v1/{route}: {answer.status_code} {answer.text[:300]}")
            return ms

        for name in trees:  # warm-up: both workers of each server, both routes
            for _ in range(60):
                post(name, "score"), post(name, "noop")
        loads = [os.getloadavg()]
        for r in range(rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                for _ in range(block):
                    for route in ("score", "noop"):
                        times[(name, route)].append(post(name, route))
            loads.append(os.getloadavg())
        for client in clients.values():
            client.close()
        # concurrent clients (CLIENTS, 0: none), one customer each: score and no-op runs alternate
        concurrent_clients = int(os.environ.get("CLIENTS", "8"))
        rates: dict[tuple[str, str], Result] = {(n, r): Result() for n in trees for r in ("score", "noop")}
        for r in range(int(os.environ.get("CONC_ROUNDS", "2")) if concurrent_clients else 0):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                for route in ("score", "noop"):
                    concurrent(
                        bases[name],
                        f"/v1/{route}",
                        lambda rng: {"customer_ids": [rng.choice(active)]},
                        clients=concurrent_clients,
                        n=int(os.environ.get("CONC_REQUESTS", "400")),
                        result=rates[(name, route)],
                    )
            loads.append(os.getloadavg())
    finally:
        for proc in servers.values():
            stop_server(proc)

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]

    for name in trees:
        score, noop = times[(name, "score")], times[(name, "noop")]
        print(
            f"{name}: /v1/score {len(score)} calls median {statistics.median(score):.2f} ms p99 {p99(score):.2f}; "
            f"/v1/noop median {statistics.median(noop):.2f} p99 {p99(noop):.2f}; "
            f"p99 ratio {p99(score) / p99(noop):.2f}x, median ratio "
            f"{statistics.median(score) / statistics.median(noop):.2f}x"
        )
    for name in trees if concurrent_clients else ():
        score, noop = rates[(name, "score")], rates[(name, "noop")]
        print(
            f"{name}, {concurrent_clients} clients: /v1/score {score.rps:.0f} req/s (p99 {p99(score.ms):.1f} ms, "
            f"errors {score.errors or 0}), /v1/noop {noop.rps:.0f} req/s (p99 {p99(noop.ms):.1f} ms)"
        )
    one = [a[0] for a in loads]
    end = " / ".join(f"{a:.2f}" for a in loads[-1])
    print(f"load average (1 min) during: {min(one):.1f}-{max(one):.1f}; 1/5/15 min at the end {end}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--http"]:
        sys.exit(http_main(Path(sys.argv[2])))
    else:
        sys.exit(main(Path(sys.argv[1])))

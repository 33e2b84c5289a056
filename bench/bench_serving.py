"""Serving figures, side by side in one run, the way a CRM calls: a real `persona serve` on loopback with
every champion loaded (segments, churn, conversion, CLV, recommendations), on the SQLite and on the Redis
online store: one customer per request sequentially and with 8 and 32 concurrent clients, 100 and 1,000
customers per request (1,000 with and without reasons), each against the `/v1/noop` floor BentoML itself
sets, alternated in one run; the overload row (300 clients x 1,000 ids: 429s, health latency, no 504);
a champion promoted while serving (seconds until served); batch scoring in process
(`serving.batch.score_everyone`, with and without write-back) and the service's memory after the load.
The load average is recorded before, between and after.

The world is built through the real CLI (generate -> ingest -> features build/apply/materialize -> train
all -> tags fit) and cached under `data/bench/serving_<N>/` (N: PERSONA_BENCH_SERVING_CUSTOMERS, default
5000). Every loop is bounded in count and time. Writes `bench/results/serving.md`.

    BENCH=serving make bench                 # or: .venv/bin/python -m bench.bench_serving
"""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serving.md"
PERSONA = str(Path(sys.executable).with_name("persona"))
KINDS = ("segments", "churn", "conversion", "clv", "recommend")  # champions the figures are measured with
API_KEY = "bench-key-persona-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
BUILT = ".built"  # marker written once every build step succeeded

# Bounds: request counts per measurement and a wall-clock cap on every loop.
SEQ_REQUESTS = 600  # per endpoint, call by call alternating score / noop
CONC_REQUESTS = 400  # per endpoint and round
CONC_ROUNDS = 2  # rounds alternate score / noop at each concurrency
MID_REQUESTS = 100  # 100-customer requests
BIG_REQUESTS = 30  # 1,000-customer requests
LOOP_SECONDS = 45.0  # no single measurement loop runs longer than this
OVERLOAD_CLIENTS = 300  # the overload row: this many clients at once, 1,000 ids each
OVERLOAD_SECONDS = 20.0
RELOAD_POLL_SECONDS = 10.0  # the served poll interval during the bench (config default: 30 s)
if os.environ.get("PERSONA_BENCH_SERVING_SMOKE"):  # every path once, tiny counts: checks the script only
    SEQ_REQUESTS, CONC_REQUESTS, CONC_ROUNDS, MID_REQUESTS, BIG_REQUESTS = 20, 20, 1, 3, 3
    OVERLOAD_CLIENTS, OVERLOAD_SECONDS, RELOAD_POLL_SECONDS = 30, 3.0, 2.0
    RESULTS = ROOT / "bench" / "results" / "serving_smoke.md.tmp"  # never gathered into BENCHMARKS.md
READY_SECONDS = 180.0
BATCH_RUNS = 1 if os.environ.get("PERSONA_BENCH_SERVING_SMOKE") else 3

# The aims (reported against, never asserted).
AIM_P99_MS = 6.0
AIM_P99_RATIO = 2.0
AIM_RPS_8 = 400.0
AIM_BIG_MS = 80.0  # 1,000 customers without reasons
AIM_BIG_EXPLAIN_MS = 150.0  # 1,000 customers with reasons
AIM_HEALTH_MS = 1000.0  # /healthz under the overload row
AIM_RELOAD_SECONDS = 60.0
AIM_BATCH_RATE = 100_000.0
AIM_MEMORY_MB = 1536.0


# ------------------------------------------------------------------------------------------ world
def _env(world: Path) -> dict[str, str]:
    from configs.settings import load_settings

    # As `persona demo` does: the synthetic world spans two years, too short for the default 365-day
    # value horizon, so CLV is trained (and served) on generator.demo_clv_horizon_days.
    horizon = load_settings().generator.demo_clv_horizon_days
    return {
        **os.environ,
        "PERSONA_TRAINING__CLV_HORIZON_DAYS": str(horizon),
        "PERSONA_DATA_DIR": str(world),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TQDM_DISABLE": "1",
    }


def _persona(args: list[str], world: Path) -> str:
    started = time.perf_counter()
    proc = subprocess.run([PERSONA, *args], cwd=ROOT, env=_env(world), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(
            f"bench_serving: `persona {' '.join(args)}` failed ({proc.returncode}):\n"
            f"{(proc.stdout + proc.stderr)[-3000:]}"
        )
    print(f"  persona {' '.join(args)}: {time.perf_counter() - started:.0f} s", flush=True)
    return proc.stdout


def build_world(customers: int, world: Path) -> bool:
    """Build the world through the CLI unless a complete one is cached. Returns True when built now."""
    if (world / BUILT).is_file():
        print(f"bench_serving: reusing {world}", flush=True)
        return False
    if world.exists():  # an interrupted build: start again
        shutil.rmtree(world)
    world.mkdir(parents=True)
    print(f"bench_serving: building a world of {customers:,} customers in {world}", flush=True)
    steps = [
        ["data", "generate", "--customers", str(customers), "--seed", "5", "--out", str(world / "raw")],
        ["ingest"],
        ["features", "build"],
        ["features", "apply"],
        ["features", "materialize"],
        ["train", "all"],
        ["tags", "fit"],
    ]
    for step in steps:
        out = _persona(step, world)
        if step[0] == "train":
            print("    " + out.strip().replace("\n", "\n    "), flush=True)
    (world / BUILT).write_text(datetime.now(UTC).isoformat(), encoding="utf-8")
    return True


def ensure_champions(world: Path) -> list[str]:
    """Every model needs a champion; where the gate refused one, force the newest version with
    `persona promote KIND --force N --reason ...`. Returns the champions that hold their alias by a manual promotion,
    now or in the run that built the cached world (said in the output)."""
    from artifacts.registry import champion_version, client, model_name
    from configs.settings import load_settings

    settings = load_settings(data_dir=str(world))
    c = client(settings)
    forced = []
    for kind in KINDS:
        name = model_name(settings, kind)
        version = champion_version(settings, kind, mlflow_client=c)
        if version is not None:
            if (c.get_model_version(name, version).tags or {}).get("champion.promoted_by") == "manual":
                forced.append(f"{kind} v{version}")
                print(
                    f"  NOTE: {kind} v{version} is champion by a manual promotion, not the gate", flush=True
                )
            continue
        versions = [int(v.version) for v in c.search_model_versions(f"name='{name}'")]
        if not versions:
            raise SystemExit(
                f"bench_serving: {name} has no registered version to promote (train {kind} failed)"
            )
        _persona(
            ["promote", kind, "--force", str(max(versions)), "--reason", "benchmark: newest version"], world
        )
        forced.append(f"{kind} v{max(versions)}")
        print(
            f"  NOTE: the gate gave {kind} no champion; forced v{max(versions)} with persona promote",
            flush=True,
        )
    return forced


def customer_ids(world: Path) -> tuple[list[str], list[str]]:
    """(active: bought in the last 365 days, eligible: every customer of the latest snapshot) minus
    customers who withdrew consent."""
    import pandas as pd

    customers = pd.read_parquet(world / "clean" / "customers.parquet")
    features = pd.read_parquet(world / "features" / "customer_transactions.parquet")
    latest = features[features["event_timestamp"] == features["event_timestamp"].max()]
    withdrawn = set(customers.loc[~customers["consent_profiling"].astype(bool), "customer_id"].astype(str))
    active = [
        c for c in latest.loc[latest["frequency_365d"] > 0, "customer_id"].astype(str) if c not in withdrawn
    ]
    eligible = [c for c in latest["customer_id"].astype(str) if c not in withdrawn]
    return active, eligible


# ----------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(world: Path, tmp: Path, **extra: str) -> tuple[subprocess.Popen, str, Path]:
    """`persona serve` in its own process group, dispatcher off, its own BENTOML_HOME; waits for /readyz."""
    import httpx

    port = free_port()
    log = tmp / f"serve-{port}.log"
    env = {
        **_env(world),
        "PERSONA_SERVING__RELOAD_POLL_SECONDS": str(RELOAD_POLL_SECONDS),
        **extra,
        "PERSONA_API_KEYS": API_KEY,
        "PERSONA_SERVING__DISPATCH_IN_SERVICE": "false",
        "PERSONA_SERVING__BENCHMARK_ENDPOINT": "true",  # /v1/noop, the floor score is compared with
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PERSONA, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while time.monotonic() - started < READY_SECONDS:
            if proc.poll() is not None:
                raise SystemExit(f"persona serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    print(f"  server ready in {time.monotonic() - started:.1f} s", flush=True)
                    return proc, base, log
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"persona serve not ready in {READY_SECONDS:.0f} s:\n{log.read_text()[-3000:]}")
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it does not stop in 30 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


def server_memory_mb(pid: int) -> tuple[float, float, int]:
    """(sum of RSS, sum of PSS, process count) of the server's process tree, in MiB. PSS splits shared
    pages between processes, so it does not count them twice as the RSS sum does."""
    import psutil

    root = psutil.Process(pid)
    rss = pss = 0
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return rss / 2**20, pss / 2**20, len(procs)


# ------------------------------------------------------------------------------------ measurement
def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


class Result:
    """Latencies (ms) of the successful requests, the error count and wall time of one measurement."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.errors: dict[int | str, int] = {}
        self.wall = 0.0

    def add(self, ms: float, status: int | str) -> None:
        if status == 200:
            self.ms.append(ms)
        else:
            self.errors[status] = self.errors.get(status, 0) + 1

    @property
    def rps(self) -> float:
        return len(self.ms) / self.wall if self.wall else 0.0


def _post(client, url: str, body: dict) -> tuple[float, int | str]:  # type: ignore[no-untyped-def]
    import httpx

    started = time.perf_counter()
    try:
        status: int | str = client.post(url, json=body).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return (time.perf_counter() - started) * 1000, status


def sequential(
    calls: dict[str, Callable[[], tuple[float, int | str]]], *, n: int, warmup: int
) -> dict[str, Result]:
    """Each call `n` times, alternating call by call so that machine load hits all paths alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    out = {label: Result() for label in calls}
    deadline = time.monotonic() + LOOP_SECONDS
    for _ in range(n):
        if time.monotonic() > deadline:
            print(f"  sequential loop stopped at its {LOOP_SECONDS:.0f} s cap", flush=True)
            break
        for label, call in calls.items():
            started = time.perf_counter()
            ms, status = call()
            out[label].add(ms, status)
            out[label].wall += time.perf_counter() - started
    return out


def concurrent(
    base: str, path: str, bodies: Callable[[random.Random], dict], *, clients: int, n: int, result: Result
) -> None:
    """`clients` threads, each with its own keep-alive httpx.Client, share `n` requests (or stop at the
    time cap); adds latencies and the wall time from the common start to the last answer to `result`."""
    import httpx

    tickets = iter(range(n))
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
            _post(client, path, bodies(rng))  # open the connection before the clock starts
            barrier.wait()
            while time.monotonic() < deadline[0]:
                with lock:
                    ticket = next(tickets, None)
                if ticket is None:
                    return
                ms, status = _post(client, path, bodies(rng))
                with lock:
                    result.add(ms, status)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + LOOP_SECONDS + 60  # set before release; refined right after
    barrier.wait(timeout=120)
    started = time.perf_counter()
    deadline[0] = time.monotonic() + LOOP_SECONDS
    for t in threads:
        t.join(timeout=LOOP_SECONDS + 60)
    result.wall += time.perf_counter() - started


def measure_http(base: str, active: list[str], eligible: list[str]) -> dict[str, dict[str, Result]]:
    """All HTTP measurements of one server; score and noop alternate everywhere."""
    import httpx

    def one(rng: random.Random) -> dict:
        return {"customer_ids": [rng.choice(active)]}

    out: dict[str, dict[str, Result]] = {}
    rng = random.Random(11)
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        ok = client.post("/v1/score", json=one(rng))
        if ok.status_code != 200 or ok.json()["scored"] != 1:
            raise SystemExit(f"bench_serving: /v1/score answered {ok.status_code}: {ok.text[:500]}")
        print("  sequential, one customer", flush=True)
        out["seq"] = sequential(
            {
                "score": lambda: _post(client, "/v1/score", one(rng)),
                "noop": lambda: _post(client, "/v1/noop", one(rng)),
            },
            n=SEQ_REQUESTS,
            warmup=50,
        )
        for key, n, explain, count in (
            ("mid", 100, None, MID_REQUESTS),
            ("big", 1000, None, BIG_REQUESTS),
            ("big_explain", 1000, True, BIG_REQUESTS),
        ):
            size = min(n, len(eligible))
            extra = {} if explain is None else {"explain": explain}
            print(f"  sequential, {size} customers per request {extra or ''}", flush=True)
            out[key] = sequential(
                {
                    "score": lambda size=size, extra=extra: _post(
                        client, "/v1/score", {"customer_ids": rng.sample(eligible, size), **extra}
                    ),
                    "noop": lambda size=size: _post(
                        client, "/v1/noop", {"customer_ids": rng.sample(eligible, size)}
                    ),
                },
                n=count,
                warmup=3,
            )
    for clients in (8, 32):
        print(f"  {clients} concurrent clients, one customer", flush=True)
        results = {"score": Result(), "noop": Result()}
        for _ in range(CONC_ROUNDS):
            for label in ("score", "noop"):
                concurrent(base, f"/v1/{label}", one, clients=clients, n=CONC_REQUESTS, result=results[label])
        out[f"c{clients}"] = results
    return out


def measure_overload(base: str, eligible: list[str]) -> dict[str, object]:
    """The overload row: OVERLOAD_CLIENTS clients each send 1,000-id requests at once, again and again for
    OVERLOAD_SECONDS; meanwhile a prober times `/healthz`, `/readyz` and `/metrics` every 100 ms.
    Counts the answers by status and the latency of the refusals (429) and of the health probes."""
    import httpx

    size = min(1000, len(eligible))
    codes: dict[int | str, int] = {}
    refusal_ms: list[float] = []
    ok_ms: list[float] = []
    probes: dict[str, list[float]] = {"/healthz": [], "/readyz": [], "/metrics": []}
    probe_errors: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    barrier = threading.Barrier(OVERLOAD_CLIENTS + 1)

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        body = {"customer_ids": rng.sample(eligible, size)}
        with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
            barrier.wait()
            while not stop.is_set():
                ms, status = _post(client, "/v1/score", body)
                with lock:
                    codes[status] = codes.get(status, 0) + 1
                    (refusal_ms if status == 429 else ok_ms if status == 200 else []).append(ms)
                if status == 429:
                    time.sleep(1.0)  # what Retry-After asks of a well-behaved client

    def prober() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                for path in probes:
                    started = time.perf_counter()
                    try:
                        status = client.get(path).status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    ms = (time.perf_counter() - started) * 1000
                    with lock:
                        if status == 200:
                            probes[path].append(ms)
                        else:
                            probe_errors[f"{path} {status}"] = probe_errors.get(f"{path} {status}", 0) + 1
                time.sleep(0.1)

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(OVERLOAD_CLIENTS)]
    for t in threads:
        t.start()
    barrier.wait(timeout=120)
    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    time.sleep(OVERLOAD_SECONDS)
    stop.set()
    for t in [*threads, probe]:
        t.join(timeout=90)
    return {
        "clients": OVERLOAD_CLIENTS,
        "size": size,
        "codes": codes,
        "refusal_ms": refusal_ms,
        "ok_ms": ok_ms,
        "probes": probes,
        "probe_errors": probe_errors,
    }


def measure_reload(world: Path, base: str) -> tuple[float, str, str]:
    """Promote a new churn version (the champion's artifact registered again) while the server runs and
    time how long until `/readyz` serves it; the old champion is restored afterwards (the cached world
    stays as built). Returns (seconds, old version, new version)."""
    import httpx

    from artifacts.registry import CHAMPION, SERVICE_TAG, client, model_name
    from configs.settings import load_settings

    settings = load_settings(data_dir=str(world))
    c = client(settings)
    name = model_name(settings, "churn")
    old = c.get_model_version_by_alias(name, CHAMPION)
    new = c.create_model_version(
        name, source=old.source, run_id=old.run_id, tags={SERVICE_TAG: old.tags[SERVICE_TAG]}
    )
    try:
        c.set_registered_model_alias(name, CHAMPION, new.version)
        started = time.monotonic()
        seen: set[str] = set()
        # both workers must serve it: ask until 20 answers in a row come from the new version
        streak = 0
        with httpx.Client(base_url=base, timeout=30) as http:
            while time.monotonic() - started < 180:
                version = http.get("/readyz").json().get("models", {}).get("churn", {}).get("version")
                seen.add(str(version))
                streak = streak + 1 if version == str(new.version) else 0
                if streak >= 20:
                    break
                time.sleep(0.05)
        took = time.monotonic() - started if streak >= 20 else float("nan")
    finally:
        c.set_registered_model_alias(name, CHAMPION, old.version)
    return took, str(old.version), str(new.version)


def overload_only(world: Path, eligible: list[str]) -> int:
    """`PERSONA_BENCH_SERVING_ONLY=overload`: only the overload row, printed (nothing is written)."""
    before = _load()
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp_name:
        proc, base, log = start_server(world, Path(tmp_name))
        try:
            got = measure_overload(base, eligible)
        finally:
            stop_server(proc)
    codes, refusal = got["codes"], got["refusal_ms"]
    print(
        f"overload: {got['clients']} clients x {got['size']:,} ids for {OVERLOAD_SECONDS:g} s; load {before} -> {_load()}"
    )
    print(
        f"  answers {codes}; 429 median {statistics.median(refusal) if refusal else float('nan'):.0f} ms; "  # type: ignore[arg-type]
        f"admitted median {statistics.median(got['ok_ms']) if got['ok_ms'] else float('nan'):.0f} ms"
    )  # type: ignore[arg-type]
    for path, ms in got["probes"].items():  # type: ignore[attr-defined]
        if ms:
            print(
                f"  {path}: median {statistics.median(ms):.1f} ms, p99 {_p99(ms):.0f} ms, max {max(ms):.0f} ms ({len(ms)} probes)"
            )
    print(f"  probe failures {got['probe_errors'] or 0}")
    return 0


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A throw-away redis-server (no persistence) on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import redis

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if redis.Redis(host="127.0.0.1", port=port).ping():
                return proc, f"127.0.0.1:{port}"
        except redis.exceptions.ConnectionError:
            time.sleep(0.2)
    stop_server(proc)
    raise SystemExit("bench_serving: redis-server did not start")


def redis_env(address: str) -> dict[str, str]:
    return {
        "PERSONA_CONFIG": str(ROOT / "configs" / "redis.yaml"),
        "PERSONA_FEAST__REDIS_CONNECTION_STRING": address,
    }


def measure_batch(world: Path, tmp: Path) -> dict[str, object]:
    """`score_everyone` in process: write_back=False (the scoring rate) and write_back=True into a fresh
    state database per run (every tag is new, so every tag is written and queued: the worst case)."""
    from configs.settings import load_settings
    from serving.batch import score_everyone
    from serving.outbox import Outbox
    from serving.scoring import load_state
    from serving.tagging import open_tag_store

    settings = load_settings(data_dir=str(world))
    state = load_state(settings)
    score_everyone(settings, write_back=False, state=state)  # warm-up: imports, first-call costs
    plain = []
    for _ in range(BATCH_RUNS):
        started = time.perf_counter()
        summary = score_everyone(settings, write_back=False, state=state)
        plain.append((summary, time.perf_counter() - started))
    written = []
    for i in range(BATCH_RUNS):
        wb_settings = load_settings(data_dir=str(world), state_url=f"sqlite:///{tmp}/state_{i}.sqlite")
        tag_store = open_tag_store(wb_settings, state.catalog)
        # open_tag_store creates only the tag tables; the outbox table comes from the dispatcher or
        # `persona crm`, so a fresh state DB needs it created here (else: no such table: crm_outbox)
        Outbox(tag_store.engine).create_schema()
        wb_state = dataclasses.replace(state, settings=wb_settings, tag_store=tag_store)
        started = time.perf_counter()
        summary = score_everyone(wb_settings, write_back=True, state=wb_state)
        written.append((summary, time.perf_counter() - started))
    return {"plain": plain, "written": written}


def measure_big_parts(world: Path, eligible: list[str], *, n: int = 1000, runs: int = 10) -> dict[str, float]:
    """Where the time of an n-customer request goes, in process (no HTTP): the Feast online read alone
    (`features.feast_io.online_features`, every view of the three services) against the whole
    `Scorer.score`. Medians in ms over `runs` random requests."""
    from configs.settings import load_settings
    from features.feast_io import online_features
    from serving.scoring import Scorer, load_state

    scorer = Scorer(load_state(load_settings(data_dir=str(world))))
    gc.collect()
    gc.freeze()  # as the service does once loaded (serving/service.py)
    rng = random.Random(5)
    now = datetime.now(UTC)
    read_ms, score_ms = [], []
    scorer.score(rng.sample(eligible, n), write_back=False, now=now)  # warm-up
    for _ in range(runs):
        ids = rng.sample(eligible, n)
        started = time.perf_counter()
        online_features(scorer.state.store, customer_ids=ids, service=scorer.services, as_of=now)
        read_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        scorer.score(ids, write_back=False, now=now)
        score_ms.append((time.perf_counter() - started) * 1000)
    gc.unfreeze()  # frozen objects are never freed at exit: native libraries then report leaks
    return {"n": n, "read": statistics.median(read_ms), "score": statistics.median(score_ms)}


# ---------------------------------------------------------------------------------------- report
ROW_LABELS = (
    ("seq", "1 customer, sequential"),
    ("c8", "1 customer, 8 clients"),
    ("c32", "1 customer, 32 clients"),
    ("mid", "100 customers, sequential"),
    ("big", "1,000 customers, sequential (explain default: off)"),
    ("big_explain", "1,000 customers, sequential, explain: true"),
)


def http_rows(store: str, http: dict[str, dict[str, Result]]) -> list[tuple]:
    """Table rows of the HTTP measurements, printed as they are made."""
    rows = []
    for key, label in ROW_LABELS:
        for route in ("score", "noop"):
            r = http[key][route]
            med = statistics.median(r.ms) if r.ms else float("nan")
            p99 = _p99(r.ms) if r.ms else float("nan")
            rows.append((store, label, route, len(r.ms), med, p99, r.rps, r.errors))
            print(
                f"  {store:<6} {label:<48} /v1/{route:<5} n={len(r.ms):>5} median {med:7.2f} ms  "
                f"p99 {p99:7.2f} ms  {r.rps:8.0f} req/s  errors {r.errors or 0}",
                flush=True,
            )
    return rows


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def main() -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    customers = int(os.environ.get("PERSONA_BENCH_SERVING_CUSTOMERS", "5000"))
    world = ROOT / "data" / "bench" / f"serving_{customers}"
    build_world(customers, world)
    forced = ensure_champions(world)
    active, eligible = customer_ids(world)
    print(f"bench_serving: {len(eligible):,} scoreable customers, {len(active):,} active", flush=True)
    from configs.settings import load_settings

    workers = load_settings(data_dir=str(world)).serving.workers
    if os.environ.get("PERSONA_BENCH_SERVING_ONLY") == "overload":
        return overload_only(world, eligible)
    load_before = _load()
    loads = {"before": load_before}
    http: dict[str, dict[str, dict[str, Result]]] = {}
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp_name:
        tmp = Path(tmp_name)
        proc, base, log = start_server(world, tmp)
        try:
            import httpx

            served = httpx.get(f"{base}/readyz", timeout=10).json()
            print(f"  models served: {served.get('models')}", flush=True)
            http["SQLite"] = measure_http(base, active, eligible)
            loads["after SQLite"] = _load()
            rows += http_rows("SQLite", http["SQLite"])
            print(
                f"  overload: {OVERLOAD_CLIENTS} clients x 1,000 ids for {OVERLOAD_SECONDS:.0f} s", flush=True
            )
            overload = measure_overload(base, eligible)
            loads["after overload"] = _load()
            print(
                f"  overload answers {overload['codes']}, probe errors {overload['probe_errors']}", flush=True
            )
            print("  a churn champion promoted while serving", flush=True)
            reload_seconds, reload_old, reload_new = measure_reload(world, base)
            print(f"  served after {reload_seconds:.1f} s (poll {RELOAD_POLL_SECONDS:g} s)", flush=True)
            rss_mb, pss_mb, nprocs = server_memory_mb(proc.pid)
            print(f"  server memory after the load: RSS {rss_mb:,.0f} MiB, PSS {pss_mb:,.0f} MiB", flush=True)
        except BaseException:
            print(f"server log tail:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            stop_server(proc)
        redis_proc, address = start_redis(tmp)
        try:
            print(f"  Redis online store at {address}: persona features materialize --full", flush=True)
            started = time.perf_counter()
            done = subprocess.run(
                [PERSONA, "features", "materialize", "--full"],
                cwd=ROOT,
                env={**_env(world), **redis_env(address)},
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(
                    f"bench_serving: materialize to Redis failed:\n{(done.stdout + done.stderr)[-3000:]}"
                )
            print(f"    {time.perf_counter() - started:.0f} s", flush=True)
            proc, base, log = start_server(world, tmp, **redis_env(address))
            try:
                http["Redis"] = measure_http(base, active, eligible)
                loads["after Redis"] = _load()
                rows += http_rows("Redis", http["Redis"])
            except BaseException:
                print(f"server log tail:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                raise
            finally:
                stop_server(proc)
        finally:
            stop_server(redis_proc)
        print("  batch scoring in process", flush=True)
        batch = measure_batch(world, tmp)
        print("  where a request spends its time, in process", flush=True)
        parts = measure_big_parts(world, eligible, n=min(1000, len(eligible)))
        parts_one = measure_big_parts(world, active, n=1, runs=300)
    load_after = _load()
    loads["end"] = load_after
    sq = http["SQLite"]

    def p99_of(key: str, route: str, store: str = "SQLite") -> float:
        ms = http[store][key][route].ms
        return _p99(ms) if ms else float("nan")

    def median_of(key: str, route: str, store: str = "SQLite") -> float:
        ms = http[store][key][route].ms
        return statistics.median(ms) if ms else float("nan")

    ratios = {
        (store, key): p99_of(key, "score", store) / p99_of(key, "noop", store)
        for store in http
        for key in ("seq", "c8", "c32")
    }
    plain_rates = [s.customers_per_second for s, _ in batch["plain"]]  # type: ignore[attr-defined]
    wb = batch["written"]  # type: ignore[assignment]
    wb_score_rates = [s.customers_per_second for s, _ in wb]
    wb_total_rates = [s.customers / (s.score_seconds + s.write_seconds) for s, _ in wb]
    wb_wall_rates = [s.customers / wall for s, wall in wb]
    plain_wall_rates = [s.customers / wall for s, wall in batch["plain"]]  # type: ignore[attr-defined]
    batch_n = batch["plain"][0][0].customers  # type: ignore[index]
    queued = wb[0][0].queued_changes
    seq_p99 = p99_of("seq", "score")
    c8_rps = sq["c8"]["score"].rps
    big_med, big_p99 = median_of("big", "score"), p99_of("big", "score")
    bige_med, bige_p99 = median_of("big_explain", "score"), p99_of("big_explain", "score")
    codes = overload["codes"]  # type: ignore[assignment]
    health = overload["probes"]["/healthz"]  # type: ignore[index]
    health_max = max(health) if health else float("nan")
    refusal = overload["refusal_ms"]  # type: ignore[assignment]
    bad = {k: v for k, v in codes.items() if k not in (200, 429)}

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    aims = [
        (
            "1 customer, sequential, p99",
            f"<= {AIM_P99_MS:g} ms",
            f"{seq_p99:.2f} ms",
            met(seq_p99 <= AIM_P99_MS),
        ),
        (
            "1 customer p99 / no-op p99",
            f"<= {AIM_P99_RATIO:g}x",
            f"{ratios[('SQLite', 'seq')]:.2f}x",
            met(ratios[("SQLite", "seq")] <= AIM_P99_RATIO),
        ),
        (
            "8 clients, 1 customer each",
            f">= {AIM_RPS_8:g} req/s",
            f"{c8_rps:,.0f} (no-op {sq['c8']['noop'].rps:,.0f})",
            met(c8_rps >= AIM_RPS_8),
        ),
        (
            "1,000 customers, with reasons (median)",
            f"<= {AIM_BIG_EXPLAIN_MS:g} ms",
            f"{bige_med:.0f} ms (p99 {bige_p99:.0f})",
            met(bige_med <= AIM_BIG_EXPLAIN_MS),
        ),
        (
            "1,000 customers, without reasons (median)",
            f"<= {AIM_BIG_MS:g} ms",
            f"{big_med:.0f} ms (p99 {big_p99:.0f})",
            met(big_med <= AIM_BIG_MS),
        ),
        (
            f"{overload['clients']} clients x 1,000 ids",
            "429 early, health < 1 s, no 504",
            f"{codes.get(200, 0)} ok, {codes.get(429, 0)} x 429 (median {statistics.median(refusal) if refusal else float('nan'):.0f} ms), "
            f"other {bad or 0}; /healthz max {health_max:.0f} ms",
            met(codes.get(429, 0) > 0 and not bad and health_max < AIM_HEALTH_MS),
        ),
        (
            "a new champion promoted while serving",
            f"served within {AIM_RELOAD_SECONDS:g} s",
            f"{reload_seconds:.1f} s (churn v{reload_old} -> v{reload_new}, poll {RELOAD_POLL_SECONDS:g} s)",
            met(reload_seconds <= AIM_RELOAD_SECONDS),
        ),
        (
            "batch scoring, models + tags",
            f">= {AIM_BATCH_RATE:,.0f}/s",
            f"{statistics.median(plain_rates):,.0f}/s",
            met(statistics.median(plain_rates) >= AIM_BATCH_RATE),
        ),
        (
            "service memory (RSS sum of the tree)",
            f"< {AIM_MEMORY_MB:,.0f} MiB",
            f"{rss_mb:,.0f} MiB",
            met(rss_mb < AIM_MEMORY_MB),
        ),
    ]
    for aim in aims:
        print(f"  aim {aim[0]}: {aim[2]} (target {aim[1]}) -> {aim[3]}", flush=True)

    models = ", ".join(f"{k} v{v['version']}" for k, v in (served.get("models") or {}).items())
    lines = [
        "## Serving (online scoring service and batch scoring)",
        "",
        "Command: `BENCH=serving make bench` (`.venv/bin/python -m bench.bench_serving`; world size from "
        f"`PERSONA_BENCH_SERVING_CUSTOMERS`, here {customers:,}). World built through the CLI (generate, "
        "ingest, features build/apply/materialize, train all, tags fit) and cached in "
        f"`data/bench/serving_{customers}/`: {len(eligible):,} scoreable customers of the latest snapshot, "
        f"{len(active):,} of them active. Models served: {models}. A real `persona serve` on 127.0.0.1 "
        f"({workers} workers from config, outbox dispatcher off), on the SQLite online store and then on a "
        "local Redis (`configs/redis.yaml`, `persona features materialize --full` into it), called over HTTP "
        "with keep-alive httpx clients (threads, one client each) from one process on the same machine, so "
        f"the client's own cost is in every figure, score and no-op alike. {os.cpu_count()} cores shared "
        "with other work; load average (1/5/15 min) "
        + "; ".join(f"{k} {v}" for k, v in loads.items())
        + f"; measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    if forced:
        lines += [
            f"**Champions forced**: the promotion gate refused a champion on this data for {', '.join(forced)}; "
            "the benchmark promoted the newest version with `persona promote KIND --force N --reason ...` (when it "
            "built the world).",
            "",
        ]
    lines += [
        "`/v1/noop` validates the same request body and returns at once: the floor BentoML itself sets. "
        "Sequential runs alternate score and no-op call by call; concurrent runs alternate them run by run "
        f"({CONC_ROUNDS} rounds of {CONC_REQUESTS} requests each). Random active customers per request "
        "(one customer), random scoreable customers (100 and 1,000).",
        "",
        "| store | request | route | requests | median ms | p99 ms | requests/s | errors |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for store, label, route, n, med, p99, rps, errors in rows:
        err = ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"
        lines.append(
            f"| {store} | {label} | /v1/{route} | {n} | {med:.2f} | {p99:.2f} | {rps:,.0f} | {err} |"
        )
    probe_line = ", ".join(
        f"`{path}` median {statistics.median(ms):.1f} ms, max {max(ms):.0f} ms ({len(ms)} probes)"
        for path, ms in overload["probes"].items()  # type: ignore[attr-defined]
        if ms
    )
    lines += [
        "",
        "p99 of `/v1/score` over p99 of `/v1/noop`: "
        + "; ".join(
            f"{store} "
            + ", ".join(
                f"{name} {ratios[(store, key)]:.2f}x"
                for key, name in (("seq", "sequential"), ("c8", "8 clients"), ("c32", "32 clients"))
            )
            for store in http
        )
        + ".",
        "",
        f"Overload (SQLite server): {overload['clients']} clients each send {overload['size']:,} ids at once "
        f"and again after every answer for {OVERLOAD_SECONDS:g} s (after a 429 they wait the 1 s its "
        f"Retry-After asks). Answers: {codes}. 429s answered in median "
        f"{statistics.median(refusal) if refusal else float('nan'):.0f} ms; admitted requests in median "
        f"{statistics.median(overload['ok_ms']) if overload['ok_ms'] else float('nan'):.0f} ms. Meanwhile: {probe_line}"  # type: ignore[arg-type]
        f"; probe failures {overload['probe_errors'] or 0}.",
        "",
        f"Hot reload: a new churn version registered and made champion while the server ran was served by "
        f"both workers (20 `/readyz` answers in a row) after {reload_seconds:.1f} s with "
        f"`serving.reload_poll_seconds` {RELOAD_POLL_SECONDS:g} (config default 30).",
        "",
        f"Batch scoring in process (`serving.batch.score_everyone`, {batch_n:,} customers, "
        f"{BATCH_RUNS} runs each after a warm-up, server stopped; the rate is models + tags only, "
        "as `BatchSummary.customers_per_second` counts it):",
        "",
        "| batch run | models + tags, customers/s | + write-back, customers/s | whole call, customers/s |",
        "|---|---:|---:|---:|",
        f"| write_back=False | {statistics.median(plain_rates):,.0f} | - | {statistics.median(plain_wall_rates):,.0f} |",
        f"| write_back=True (fresh state DB per run: {queued:,} tag changes written and queued) "
        f"| {statistics.median(wb_score_rates):,.0f} | {statistics.median(wb_total_rates):,.0f} "
        f"| {statistics.median(wb_wall_rates):,.0f} |",
        "",
        '(medians; "whole call" also reads the latest feature snapshot and writes `scores/latest.parquet`.)',
        "",
        f"Where a request spends its time (in process, no HTTP, SQLite, medians): 1,000 customers, the "
        f"whole `Scorer.score` {parts['score']:.0f} ms (explain default: off), of which the Feast online "
        f"read {parts['read']:.0f} ms ({parts['read'] / parts['score']:.0%}); 1 customer, "
        f"{parts_one['score']:.2f} ms, of which the read {parts_one['read']:.2f} ms.",
        "",
        f"Service memory after the load: RSS summed over the server's {nprocs} processes {rss_mb:,.0f} MiB "
        f"(PSS, shared pages counted once: {pss_mb:,.0f} MiB).",
        "",
        "Against issue 18's aims:",
        "",
        "| aim | target | measured | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {t} | {m} | {ok} |" for a, t, m, ok in aims]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"bench_serving: wrote {RESULTS}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

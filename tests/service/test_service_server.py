"""The scoring service as a user runs it: `persona serve` (a real `bentoml serve` subprocess) on loopback,
called over HTTP; schemathesis against its OpenAPI document; overload answered with 429 while health
still answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection

from tests.service.conftest import API_KEY, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PERSONA = str(Path(sys.executable).with_name("persona"))


def _start(
    world: Path, tmp: Path, *, ready: str = "/readyz", **extra: str
) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    env = {
        **os.environ,
        "PERSONA_DATA_DIR": str(world),
        "PERSONA_API_KEYS": API_KEY,
        "PERSONA_SERVING__DISPATCH_IN_SERVICE": "false",
        "BENTOML_HOME": str(tmp / "bentoml"),
        **extra,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PERSONA, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"persona serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}{ready}", timeout=2).status_code == 200:
                return proc, base, log
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _stop(proc)
    raise AssertionError(f"persona serve not ready in 120 s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base, _ = _start(world, tmp_path_factory.mktemp("serve"), PERSONA_SERVING__WORKERS="1")
    try:
        yield base
    finally:
        _stop(proc)


def test_real_server_scores_and_guards(server: str, world_ids) -> None:  # type: ignore[no-untyped-def]
    cid = world_ids["active"][0]
    ok = httpx.post(f"{server}/v1/score", json={"customer_ids": [cid]}, headers=AUTH, timeout=30)
    assert ok.status_code == 200
    assert ok.json()["items"][0]["churn"]["probability"] is not None
    assert httpx.post(f"{server}/v1/score", json={"customer_ids": [cid]}, timeout=30).status_code == 401
    assert (
        httpx.post(f"{server}/v1/score", json={"customer_ids": []}, headers=AUTH, timeout=30).status_code
        == 400
    )
    metrics = httpx.get(f"{server}/metrics", timeout=10)
    assert metrics.status_code == 200 and "bentoml" in metrics.text
    # Persona's own metrics, merged from the worker processes
    text = metrics.text
    assert re.search(r'^persona_score_items_total\{endpoint="score",status="ok"\} [1-9]', text, re.M), text
    assert re.search(r'^persona_model_probability_count\{model="churn"\} [1-9]', text, re.M)
    for kind in ("segments", "churn", "conversion"):
        assert re.search(rf'^persona_model_info\{{.*model="{kind}".*\}} 1\.0$', text, re.M), kind
    # the benchmark endpoint exists only when serving.benchmark_endpoint is on
    noop = httpx.post(f"{server}/v1/noop", json={"customer_ids": [cid]}, headers=AUTH, timeout=30)
    assert noop.status_code == 404
    spec = httpx.get(f"{server}/docs.json", timeout=10).json()
    assert spec["info"]["title"] == "Persona scoring API" and "/v1/noop" not in spec["paths"]


def test_openapi_contract(server: str) -> None:
    """Schemathesis over the CRM-facing routes of the served OpenAPI document: no 5xx for any generated
    input, invalid input rejected, and the API key really enforced (ignored_auth)."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    schema = schemathesis.openapi.from_url(f"{server}/docs.json")
    operations = [r.ok() for r in schema.include(path_regex="^/v1/(score|churn)$").get_all_operations()]
    assert {op.path for op in operations} == {"/v1/score", "/v1/churn"}
    from schemathesis.generation.modes import GenerationMode

    for operation, mode in [
        (op, m) for op in operations for m in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]:

        @given(case=operation.as_strategy(mode))
        @hsettings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                headers=AUTH, checks=[not_a_server_error, negative_data_rejection, ignored_auth], timeout=30
            )

        check()


def test_overload_gets_429_while_health_answers(world: Path, world_ids, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, base, _ = _start(
        world, tmp_path, PERSONA_SERVING__WORKERS="1", PERSONA_SERVING__MAX_CONCURRENCY="1"
    )
    try:
        ids = (world_ids["all"] * 10)[:1000]

        def call(_: int) -> int:
            return httpx.post(
                f"{base}/v1/score", json={"customer_ids": ids}, headers=AUTH, timeout=60
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(call, i) for i in range(16)]
            health = [httpx.get(f"{base}/healthz", timeout=10).status_code for _ in range(5)]
            codes = [f.result() for f in futures]
        assert set(codes) <= {200, 429}
        assert 429 in codes, codes
        assert 200 in codes, codes
        assert health == [200] * 5
    finally:
        _stop(proc)


def test_missing_registry_gives_503_json_and_unready(tmp_path: Path) -> None:
    """No champion yet (empty data dir): the service starts, health answers, scoring says why it can't."""
    empty = tmp_path / "data"
    empty.mkdir()
    proc, base, _ = _start(empty, tmp_path, ready="/healthz", PERSONA_SERVING__WORKERS="1")
    try:
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 503
        response = httpx.post(f"{base}/v1/score", json={"customer_ids": ["P1"]}, headers=AUTH, timeout=30)
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "not_ready"
        assert "champion" in body["detail"] or "feature" in body["detail"]
        assert response.headers["retry-after"]
    finally:
        _stop(proc)


def test_feature_store_failure_gives_503_json(world: Path, world_ids, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The online store breaks under a running service: 503 with a JSON body, no hang; back when fixed."""
    proc, base, _ = _start(world, tmp_path, PERSONA_SERVING__WORKERS="1")
    online = world / "feast" / "online_store.db"
    backup = tmp_path / "online_store.db"
    cid = world_ids["active"][0]
    try:
        online.rename(backup)
        online.write_bytes(b"this is not a sqlite database" * 100)
        try:
            broken = httpx.post(f"{base}/v1/score", json={"customer_ids": [cid]}, headers=AUTH, timeout=30)
        finally:
            online.unlink()
            backup.rename(online)
        assert broken.status_code == 503
        assert broken.json()["error"] == "feature_store_unavailable"
        healed = httpx.post(f"{base}/v1/score", json={"customer_ids": [cid]}, headers=AUTH, timeout=30)
        assert healed.status_code == 200
    finally:
        _stop(proc)


def test_a_promoted_champion_is_served_without_restart(world: Path, world_ids, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Promote a new churn version while a client scores in a loop: no request fails, every answer
    comes from one model set (its header names the set, its body the versions), and the new version
    answers within the poll interval plus its load time."""
    from artifacts.registry import CHAMPION, SERVICE_TAG, client, model_name
    from configs.settings import load_settings

    settings = load_settings(data_dir=str(world))
    c = client(settings)
    name = model_name(settings, "churn")
    old = c.get_model_version_by_alias(name, CHAMPION)
    proc, base, _ = _start(
        world, tmp_path, PERSONA_SERVING__WORKERS="2", PERSONA_SERVING__RELOAD_POLL_SECONDS="1"
    )
    cid = world_ids["active"][0]
    answers: list[tuple[int, str | None, dict]] = []
    try:
        first = httpx.get(f"{base}/readyz", timeout=10).json()
        assert first["models"]["churn"]["version"] == str(old.version) and first["model_set"]
        new = c.create_model_version(
            name, source=old.source, run_id=old.run_id, tags={SERVICE_TAG: old.tags[SERVICE_TAG]}
        )
        c.set_registered_model_alias(name, CHAMPION, new.version)
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
            while time.monotonic() < deadline:
                r = http.post("/v1/score", json={"customer_ids": [cid]})
                body = r.json()
                answers.append(
                    (r.status_code, r.headers.get("x-persona-model-set"), body.get("model_versions"))
                )
                # both workers: keep going until a run of answers all come from the new set
                recent = answers[-20:]
                if len(answers) > 20 and all(
                    a[0] == 200 and a[2]["churn"] == str(new.version) for a in recent
                ):
                    break
                time.sleep(0.02)
        assert {a[0] for a in answers} == {200}, [a for a in answers if a[0] != 200][:3]
        assert answers[-1][2]["churn"] == str(new.version), "the promoted champion was never served"
        versions_of_set: dict[str, set] = {}
        for _, set_id, versions in answers:
            assert set_id
            versions_of_set.setdefault(set_id, set()).add(tuple(sorted(versions.items())))
        assert all(len(v) == 1 for v in versions_of_set.values()), versions_of_set
        assert len(versions_of_set) == 2
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        assert ready["models"]["churn"]["version"] == str(new.version)
    finally:
        c.set_registered_model_alias(name, CHAMPION, old.version)  # the shared world as it was
        _stop(proc)

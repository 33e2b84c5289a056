"""The request surface of a real `persona serve`: wrong content types and malformed multipart get 415,
bodies over `serving.max_body_bytes` get 413 before they are read (a 50 MB body included), 4xx bodies
are `{"error": str, "detail": str}` as the OpenAPI document says and are logged as one line without a
traceback; schemathesis with every check finds nothing (a few hundred cases here, >= 5,000 under `slow`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import API_KEY

pytestmark = [pytest.mark.integration]

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# The default limit: above the largest valid request (1,000 ids of 64 characters, each escaped as
# \\uXXXX\\uXXXX, is about 770 KB), so schema-valid cases never meet a 413.
LIMIT = 1_048_576


@pytest.fixture(scope="module")
def served(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from tests.service.test_service_server import _start, _stop

    proc, base, log = _start(
        world,
        tmp_path_factory.mktemp("surface"),
        PERSONA_SERVING__WORKERS="1",
        PERSONA_SERVING__MAX_BODY_BYTES=str(LIMIT),
    )
    try:
        yield base, log
    finally:
        _stop(proc)


def post(base: str, content: bytes, content_type: str | None, **kw: object) -> httpx.Response:
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(f"{base}/v1/score", content=content, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def declared_error(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str) and body["detail"], body
    return body


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary: was a 500 (KeyError b'boundary')
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="customer_ids"\r\n\r\nP1\r\n--x--\r\n',
        ),
        ("application/x-www-form-urlencoded", b"customer_ids=P1"),
        ("text/plain", b'{"customer_ids": ["P1"]}'),
        ("application/json; charset=utf-16", '{"customer_ids": ["P1"]}'.encode("utf-16")),
    ],
)
def test_wrong_content_types_get_415(served, content_type: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    response = post(served[0], body, content_type)
    assert response.status_code == 415
    assert declared_error(response)["error"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "body",
    [b'{"customer_ids": [', b'{"customer_ids": []}', b'{"customer_ids": "P1"}', b"[]", b"\xff\xfe"],
)
def test_bad_json_gets_400_with_the_declared_body(served, body: bytes) -> None:  # type: ignore[no-untyped-def]
    response = post(served[0], body, "application/json")
    assert response.status_code == 400
    declared_error(response)


def test_a_50_mb_body_is_refused_before_it_is_read(served) -> None:  # type: ignore[no-untyped-def]
    """Content-Length says 50 MB: the answer comes before the body is sent (the server never reads it)."""
    base, _ = served
    host, port = base.removeprefix("http://").split(":")
    size = 50 * 1024 * 1024
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        )
        started = time.perf_counter()
        sock.sendall(head.encode() + b'{"customer_ids": [')  # a few bytes of the 50 MB, then wait
        answer = sock.recv(65536).decode("latin-1")
        head_part, _, body_part = answer.partition("\r\n\r\n")
        length = int(
            next(h.split(":")[1] for h in head_part.split("\r\n") if h.lower().startswith("content-length"))
        )
        while len(body_part.encode("latin-1")) < length:  # the body may come in a later segment
            body_part += sock.recv(65536).decode("latin-1")
        answer = head_part + "\r\n\r\n" + body_part
        print(
            f"\n50 MB Content-Length: {answer[:12]!r} after {1000 * (time.perf_counter() - started):.1f} ms, 18 body bytes sent"
        )
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"payload_too_large"' in answer


def test_a_chunked_body_over_the_limit_is_cut_off(served) -> None:  # type: ignore[no-untyped-def]
    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts while reading
        yield b'{"customer_ids": ["'
        for _ in range(LIMIT // 4096 + 8):
            yield b"P" * 4096

    response = httpx.post(
        f"{served[0]}/v1/score",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert declared_error(response)["error"] == "payload_too_large"


def test_a_body_under_the_limit_is_scored(served, world_ids) -> None:  # type: ignore[no-untyped-def]
    padded = b'{"customer_ids": ["' + world_ids["active"][0].encode() + b'"]}' + b" " * (LIMIT - 100)
    response = post(served[0], padded, "application/json")
    assert response.status_code == 200
    assert response.json()["items"][0]["status"] == "ok"
    assert post(served[0], b'{"customer_ids": ["P1"]}', None).status_code == 200  # no type: JSON


def test_4xx_are_one_warning_line_without_traceback(served) -> None:  # type: ignore[no-untyped-def]
    base, log = served
    before = log.read_text(errors="replace")
    marker = "P-log-probe-0123456789-0123456789-0123456789-0123456789-0123456789x"  # 65 chars: too long
    for _ in range(3):
        assert (
            post(base, b'{"customer_ids": ["' + marker.encode() + b'"]}', "application/json").status_code
            == 400
        )
    assert post(base, b"x", "multipart/form-data").status_code == 415
    new = log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in new and "ERROR" not in new, new[-3000:]
    lines = [line for line in new.splitlines() if "POST /v1/score -> " in line]
    assert len(lines) == 4, new[-3000:]
    assert all("WARNING" in line for line in lines), lines
    assert marker not in new  # the rejected input is not echoed into the log


def test_openapi_declares_the_error_body_413_and_415(served) -> None:  # type: ignore[no-untyped-def]
    spec = httpx.get(f"{served[0]}/docs.json", timeout=10).json()
    responses = spec["paths"]["/v1/score"]["post"]["responses"]
    assert {"400", "413", "415"} <= set(responses)
    schema = responses["400"]["content"]["application/json"]["schema"]
    assert schema["properties"]["detail"]["type"] == "string"


def run_schemathesis(base: str, *, per_operation_and_mode: int) -> int:
    """Every check schemathesis has, positive and negative cases, over the API routes; returns how
    many cases were sent (failures raise)."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from schemathesis.config import SchemathesisConfig
    from schemathesis.generation.modes import GenerationMode

    # 413 is a documented refusal: a negative case too big for serving.max_body_bytes is rejected by it
    config = SchemathesisConfig.from_dict(
        {
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
                }
            }
        }
    )
    schema = schemathesis.openapi.from_url(f"{base}/docs.json", config=config)
    operations = [r.ok() for r in schema.include(path_regex="^/v1/").get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/score", "/v1/churn"}
    sent = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @hsettings(
                max_examples=per_operation_and_mode,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case) -> None:  # type: ignore[no-untyped-def]
                nonlocal sent
                sent += 1
                case.call_and_validate(headers=AUTH, timeout=30)  # no `checks=`: all of them

            check()
    return sent


def test_schemathesis_all_checks_fast(served) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    sent = run_schemathesis(served[0], per_operation_and_mode=50)
    print(f"\nschemathesis, all checks: {sent} cases, 0 failures, {time.perf_counter() - started:.0f}s")
    assert sent >= 200


@pytest.mark.slow
def test_schemathesis_all_checks_5000_cases(served) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    sent = run_schemathesis(served[0], per_operation_and_mode=1300)
    print(f"\nschemathesis, all checks: {sent} cases, 0 failures, {time.perf_counter() - started:.0f}s")
    assert sent >= 5000

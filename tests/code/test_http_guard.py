"""The request guard's pure parts and its ASGI behaviour on a tiny app: content types, body limit, the
shape of 4xx bodies, the OpenAPI declarations, and BentoML's 4xx traceback records dropped."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.http_guard import (
    QuietClientErrors,
    RequestGuard,
    declare_guard_responses,
    media_type_problem,
    normalize_error_body,
)


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        (None, True),
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ("application/json; charset=latin-1", False),
        ("multipart/form-data", False),
        ("multipart/form-data; boundary=x", False),
        ("application/x-www-form-urlencoded", False),
        ("text/plain", False),
    ],
)
def test_media_types(content_type: str | None, ok: bool) -> None:
    assert (media_type_problem(content_type) is None) is ok


def test_error_bodies_become_the_declared_strings() -> None:
    pydantic_style = {
        "error": "1 validation error for Input",
        "detail": [{"type": "too_short", "loc": ["customer_ids"], "msg": "List should have at least 1 item"}],
    }
    assert normalize_error_body(json.dumps(pydantic_style).encode(), 400) == {
        "error": "1 validation error for Input",
        "detail": "customer_ids: List should have at least 1 item",
    }
    # BentoML answers some 4xx with a one-element list as the whole body
    assert normalize_error_body(b'[{"error": "bad input"}]', 400) == {
        "error": "bad input",
        "detail": "bad input",
    }
    assert normalize_error_body(b"Method Not Allowed", 405) == {
        "error": "Method Not Allowed",
        "detail": "Method Not Allowed",
    }


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    if body == b"invalid":
        return JSONResponse({"error": "x", "detail": [{"loc": ["a"], "msg": "bad"}]}, status_code=400)
    return JSONResponse({"n": len(body)})


def _client(limit: int = 100) -> TestClient:
    app = Starlette(
        routes=[Route("/v1/echo", _echo, methods=["POST"]), Route("/other", _echo, methods=["POST"])]
    )
    return TestClient(RequestGuard(app, max_body_bytes=limit))


def test_guard_refuses_before_the_app_and_passes_good_bodies() -> None:
    client = _client()
    assert client.post(
        "/v1/echo", content=b"x" * 100, headers={"Content-Type": "application/json"}
    ).json() == {"n": 100}
    too_big = client.post("/v1/echo", content=b"x" * 101, headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
    chunked = client.post(
        "/v1/echo", content=iter([b"x" * 60, b"x" * 60]), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    wrong = client.post("/v1/echo", content=b"{}", headers={"Content-Type": "multipart/form-data"})
    assert wrong.status_code == 415
    shaped = client.post("/v1/echo", content=b"invalid", headers={"Content-Type": "application/json"})
    assert shaped.status_code == 400 and shaped.json() == {"error": "x", "detail": "a: bad"}
    # outside the API routes nothing is touched
    assert client.post("/other", content=b"x" * 500, headers={"Content-Type": "text/plain"}).json() == {
        "n": 500
    }


def test_openapi_declares_413_415_and_a_required_body() -> None:
    spec = {
        "paths": {
            "/v1/score": {"post": {"requestBody": {"content": {}}, "responses": {"200": {}}}},
            "/healthz": {"get": {"responses": {}}},
        }
    }
    out = declare_guard_responses(spec, 1024)
    post = out["paths"]["/v1/score"]["post"]
    assert {"200", "400", "413", "415"} <= set(post["responses"]) and post["requestBody"]["required"] is True
    assert out["paths"]["/healthz"]["get"]["responses"] == {}


def test_bentoml_4xx_tracebacks_are_dropped_5xx_kept() -> None:
    from bentoml.exceptions import BadInput, InternalServerError
    from pydantic import BaseModel, ValidationError

    class M(BaseModel):
        a: int

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "bentoml", logging.ERROR, __file__, 1, "Exception on %s", ("/v1",), (type(exc), exc, None)
        )

    try:
        M(a="x")  # type: ignore[arg-type]
    except ValidationError as exc:
        validation = exc
    quiet = QuietClientErrors()
    assert not quiet.filter(record(validation))
    assert not quiet.filter(record(BadInput("bad json")))
    assert quiet.filter(record(InternalServerError("boom")))
    assert quiet.filter(record(RuntimeError("boom")))

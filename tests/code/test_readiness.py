"""`/readyz` keeps BentoML's status and says which models are loaded, and why the others are not."""

from __future__ import annotations

import asyncio
import json

from serving.readiness import ReadinessMiddleware, ReadinessReport


def _call(middleware: ReadinessMiddleware, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(middleware({"type": "http", "path": path, "method": "GET"}, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def _app(status: int):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"\n"})

    return app


def test_ready_lists_the_models_loaded_and_not_loaded() -> None:
    report = ReadinessReport()
    report.set(
        {
            "ready": True,
            "models": {"churn": {"version": "3", "feature_service": "churn_orders_v1"}},
            "not_loaded": {"conversion": "no champion for persona-conversion"},
        }
    )
    status, headers, body = _call(ReadinessMiddleware(_app(200), report), "/readyz")
    assert status == 200 and headers[b"content-type"] == b"application/json"
    payload = json.loads(body)
    assert payload["ready"] is True
    assert payload["models"]["churn"]["feature_service"] == "churn_orders_v1"
    assert payload["not_loaded"] == {"conversion": "no champion for persona-conversion"}


def test_not_ready_keeps_503_and_says_why() -> None:
    report = ReadinessReport()
    report.set({"ready": False, "detail": "no champion for any model"})
    status, headers, body = _call(ReadinessMiddleware(_app(503), report), "/readyz")
    assert status == 503 and headers[b"retry-after"] == b"10"
    assert json.loads(body) == {"ready": False, "detail": "no champion for any model"}


def test_other_paths_pass_through_untouched() -> None:
    status, _, body = _call(ReadinessMiddleware(_app(200), ReadinessReport()), "/healthz")
    assert status == 200 and body == b"\n"

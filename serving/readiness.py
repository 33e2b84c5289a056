"""`/readyz` with a body: which models are loaded (version, FeatureService) and which are not, and why.

BentoML answers `/readyz` itself (200 or 503, from the service's `__is_ready__`) with an empty body; this
ASGI middleware keeps its status and replaces the body with the service's own report, so an operator sees
that e.g. conversion is not loaded because it has no champion (no leads source).
"""

from __future__ import annotations

import json
import threading
from typing import Any

READYZ = "/readyz"


class ReadinessReport:
    """What the service last reported about its readiness (one per worker process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body: dict[str, Any] = {"ready": False, "detail": "loading"}

    def set(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._body = dict(body)

    def get(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._body)


# The service writes it when it (re)loads; the middleware of the same worker reads it.
REPORT = ReadinessReport()


class ReadinessMiddleware:
    """Pure ASGI middleware: `/readyz` keeps BentoML's status, with `REPORT` as a JSON body."""

    def __init__(self, app, report: ReadinessReport | None = None) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.report = report or REPORT

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http" or scope.get("path") != READYZ:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}

        async def capture(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                start.update(message)

        await self.app(scope, receive, capture)
        status = int(start.get("status", 503))
        body = json.dumps({**self.report.get(), "ready": status == 200}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 503:
            headers.append((b"retry-after", b"10"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

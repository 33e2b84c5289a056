"""Admission by cost: the work a worker has in flight is bounded in customers, not in requests.

A 1,000-id request costs 1,000, a one-customer request 1. A scoring request that would take the worker
beyond `serving.max_inflight_customers` is answered 429 with `Retry-After` at once, before its body is
validated or anything is queued: under overload a client is told to come back instead of waiting in a
queue until the time-out turns it into a 504. Health, readiness and metrics never pass through here and
cost nothing, so they keep answering while scoring is saturated.

The count is per worker process (each worker admits its own work); it is held from the moment a request
is admitted until its answer has been sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from serving.http_guard import _replay

log = logging.getLogger("persona.serving.admission")

SCORING_PATHS = frozenset({"/v1/score", "/v1/churn"})
RETRY_AFTER_SECONDS = 1
LOG_EVERY_SECONDS = 10.0  # refusals are logged as one summary line per interval, not one per request


def request_cost(body: bytes) -> int:
    """Customers a scoring request asks for: the length of `customer_ids` (at least 1). A body that is
    not the expected JSON costs 1: the service answers it 400 without scoring anyone."""
    try:
        ids = json.loads(body).get("customer_ids")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return 1
    return max(len(ids), 1) if isinstance(ids, list) else 1


class Budget:
    """Customers in flight, with a bound; `take` never waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self, cost: int) -> bool:
        with self._lock:
            # A request alone above the bound is still admitted when nothing else runs: the schema caps a
            # request at 1,000 ids, below the smallest allowed bound, so this only guards odd configs.
            if self.in_flight and self.in_flight + cost > self.limit:
                self.refused += 1
                return False
            self.in_flight += cost
            return True

    def give_back(self, cost: int) -> None:
        with self._lock:
            self.in_flight -= cost


class AdmissionMiddleware:
    """Pure ASGI middleware in front of the scoring routes (after the size and content-type guard)."""

    def __init__(
        self,
        app: Any,
        max_inflight_customers: int = 1200,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.budget = Budget(max_inflight_customers)
        self.on_refused = on_refused  # called with the path of each refused request (the 429 counter)
        self._logged_at = 0.0
        self._logged_refused = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in SCORING_PATHS or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_all(receive)
        cost = request_cost(body)
        if not self.budget.take(cost):
            self._log_refusals()
            if self.on_refused is not None:
                self.on_refused(scope["path"])
            await _too_busy(send, cost, self.budget.limit)
            return
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.budget.give_back(cost)

    def _log_refusals(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            refused = self.budget.refused
            log.warning(
                "overloaded: %d scoring requests refused with 429 in the last %.0f s "
                "(serving.max_inflight_customers=%d per worker)",
                refused - self._logged_refused,
                now - self._logged_at if self._logged_at else 0.0,
                self.budget.limit,
            )
            self._logged_at, self._logged_refused = now, refused


async def _read_all(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _too_busy(send: Any, cost: int, limit: int) -> None:
    body = json.dumps(
        {
            "error": "overloaded",
            "detail": f"the service is at its bound of {limit:,} customers in flight per worker "
            f"(serving.max_inflight_customers); this request asks for {cost:,}: retry after "
            f"{RETRY_AFTER_SECONDS} s",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Admission by cost: customers in flight are bounded; beyond the bound the answer is 429 with
Retry-After at once (never a queue that ends in 504), while health and metrics keep answering."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from serving.admission import AdmissionMiddleware, Budget, request_cost
from serving.http_guard import RequestGuard

WORK_SECONDS = 0.5  # what one admitted request takes


def _app(limit: int) -> tuple[object, dict[str, int]]:
    seen = {"max_in_flight": 0, "in_flight": 0}

    async def score(request):  # type: ignore[no-untyped-def]
        ids = (await request.json())["customer_ids"]
        seen["in_flight"] += len(ids)
        seen["max_in_flight"] = max(seen["max_in_flight"], seen["in_flight"])
        try:
            await asyncio.sleep(WORK_SECONDS)
            if ids[0] == "boom":
                raise RuntimeError("scoring failed")
        finally:
            seen["in_flight"] -= len(ids)
        return JSONResponse({"n": len(ids)})

    async def health(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/v1/score", score, methods=["POST"]),
            Route("/healthz", health),
            Route("/metrics", health),
        ]
    )
    return RequestGuard(AdmissionMiddleware(app, max_inflight_customers=limit)), seen


def test_cost_is_the_number_of_ids() -> None:
    assert request_cost(b'{"customer_ids": ["a", "b", "c"]}') == 3
    assert request_cost(b'{"customer_ids": []}') == 1
    assert request_cost(b"not json") == 1
    assert request_cost(b'["a"]') == 1
    assert request_cost(b'{"customer_ids": "a"}') == 1


def test_budget_bounds_customers_not_requests() -> None:
    budget = Budget(3000)
    assert budget.take(1000) and budget.take(1000) and budget.take(1000)
    assert not budget.take(1)  # full: even one customer waits for room
    budget.give_back(1000)
    assert budget.take(999) and budget.take(1) and not budget.take(1000)
    assert budget.refused == 2


async def _overload(limit: int, requests: int, ids: int) -> tuple[list, list, dict[str, int]]:
    app, seen = _app(limit)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://persona") as client:

        async def call() -> tuple[int, float, str | None, dict]:
            started = time.monotonic()
            r = await client.post("/v1/score", json={"customer_ids": [f"P{i}" for i in range(ids)]})
            return r.status_code, time.monotonic() - started, r.headers.get("retry-after"), r.json()

        async def probe(path: str) -> tuple[int, float]:
            await asyncio.sleep(WORK_SECONDS / 5)  # while the admitted requests are running
            started = time.monotonic()
            r = await client.get(path)
            return r.status_code, time.monotonic() - started

        results = await asyncio.gather(
            *(call() for _ in range(requests)), probe("/healthz"), probe("/metrics")
        )
    return list(results[:requests]), list(results[requests:]), seen


def test_overload_is_refused_at_once_with_retry_after_and_health_answers() -> None:
    answers, probes, seen = asyncio.run(_overload(limit=3000, requests=40, ids=1000))
    codes = [a[0] for a in answers]
    assert codes.count(200) == 3, codes  # 3 x 1,000 customers fit the bound of 3,000
    assert codes.count(429) == 37, codes
    assert set(codes) == {200, 429}
    assert seen["max_in_flight"] <= 3000
    for status, seconds, retry_after, body in answers:
        if status == 429:
            assert retry_after == "1"
            assert body["error"] == "overloaded" and "max_inflight_customers" in body["detail"]
            assert seconds < WORK_SECONDS  # refused at once, not after waiting for the admitted ones
    assert [p[0] for p in probes] == [200, 200]
    assert all(seconds < 5 for _, seconds in probes)  # a generous sanity bound on a shared machine


def test_one_customer_requests_fill_the_same_bound() -> None:
    answers, _, seen = asyncio.run(_overload(limit=1000, requests=30, ids=40))
    codes = [a[0] for a in answers]
    assert codes.count(200) == 25 and codes.count(429) == 5, codes
    assert seen["max_in_flight"] == 1000


def test_the_budget_is_given_back_after_answers_and_failures() -> None:
    app, _ = _app(1000)

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://persona") as client:
            codes = []
            for first in ("boom", "P1", "boom", "P2"):
                body = {"customer_ids": [first] + [f"P{i}" for i in range(999)]}
                codes.append((await client.post("/v1/score", json=body)).status_code)
            return codes

    codes = asyncio.run(run())
    assert codes == [500, 200, 500, 200]  # each one alone fits: nothing leaked from the failures
    assert app.app.budget.in_flight == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_health_and_metrics_cost_nothing(path: str) -> None:
    app, _ = _app(1000)

    async def run() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
            return (await c.get(path)).status_code

    assert asyncio.run(run()) == 200
    assert app.app.budget.in_flight == 0  # type: ignore[attr-defined]


def test_refusals_are_counted_per_endpoint() -> None:
    from prometheus_client import CollectorRegistry

    from serving.metrics import ServiceMetrics

    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    app, _ = _app(1000)
    app.app.on_refused = metrics.refused  # type: ignore[attr-defined]

    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
            body = {"customer_ids": [f"P{i}" for i in range(1000)]}
            return [
                r.status_code
                for r in await asyncio.gather(*(c.post("/v1/score", json=body) for _ in range(4)))
            ]

    codes = asyncio.run(run())
    assert sorted(codes) == [200, 429, 429, 429]
    refused = registry.get_sample_value("persona_admission_refused_total", {"endpoint": "score"})
    assert refused == 3
    assert registry.get_sample_value("persona_admission_refused_total", {"endpoint": "churn"}) is None

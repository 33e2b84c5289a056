"""The public OpenAPI document (`/docs.json`): Persona's title, description and version, request examples,
the bearer scheme, and every outcome the CRM must handle (401, 413, 429, 503, 504 besides BentoML's 400).

BentoML generates the document from the service; `OpenApiMiddleware` rewrites it on the way out.
Benchmark-only endpoints never appear in it.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from serving.auth import add_security
from serving.schemas import MAX_IDS

TITLE = "Persona scoring API"
DESCRIPTION = f"""Customer profiles for your CRM: for 1 to {MAX_IDS:,} pseudonymous customer ids per request,
the segment and persona, churn and conversion probabilities (calibrated, with a tier and the top reasons
as log-odds contributions), and every tag of the catalog. With `write_back: true`, changed tags are queued
for the CRM through a transactional outbox. `explain` asks for the reasons of each score: by default true
up to 100 ids per request and false above (`serving.explain_up_to`), where reasons would cost more than
the scores; tags are complete either way.

Every answer names the model set that produced it (`model_set`, header `X-Persona-Model-Set`) and its
versions (`model_versions`): a newly promoted champion is picked up without a restart and swapped in
whole, so one answer never mixes versions.

Authentication: `Authorization: Bearer <key>`, keys from `PERSONA_API_KEYS`. `/healthz`, `/readyz`,
`/metrics` (Prometheus) and this document are open.

Unknown ids answer `status: not_found`; customers who withdrew consent answer `status: consent_withdrawn`
and are never scored or tagged. Stale or missing features are scored with documented defaults and
flagged `degraded: true`."""

# Endpoints for benchmarks only (serving.benchmark_endpoint): not part of the contract.
PRIVATE_PATHS = frozenset({"/v1/noop"})
SCORING_PATHS = ("/v1/score", "/v1/churn")

EXAMPLE_ID = "P0955fcb621c2"
REQUEST_EXAMPLES = {
    "/v1/score": {
        "one customer": {"customer_ids": [EXAMPLE_ID]},
        "queue tag changes for the CRM": {"customer_ids": [EXAMPLE_ID, "P1b2c3d4e5f60"], "write_back": True},
        "many customers, scores without reasons": {
            "customer_ids": [EXAMPLE_ID, "P1b2c3d4e5f60"],
            "explain": False,
        },
    },
    "/v1/churn": {"one customer": {"customer_ids": [EXAMPLE_ID]}},
}

ERROR_SCHEMA = {
    "title": "PersonaError",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable cause, e.g. not_ready"},
        "detail": {"type": "string", "description": "what is wrong and what to do"},
    },
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/PersonaError"}}}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}
ERROR_RESPONSES = {
    "401": {"description": "missing or invalid API key", "content": _ERROR},
    "413": {"description": f"request body too large (at most {MAX_IDS:,} customer ids)"},
    "429": {
        "description": "overloaded: more customers in flight than serving.max_inflight_customers per "
        "worker (a 1,000-id request counts 1,000), or more requests than serving.max_concurrency; "
        "answered at once, retry after Retry-After seconds",
        "headers": _RETRY_AFTER,
    },
    "503": {
        "description": "not ready: no champion yet, or the registry, feature store or state database is "
        "unavailable (error: not_ready, feature_store_unavailable, state_store_unavailable); "
        "the service retries and heals",
        "headers": _RETRY_AFTER,
        "content": _ERROR,
    },
    "504": {"description": "the request took longer than serving.timeout_seconds"},
}


def package_version() -> str:
    try:
        return version("persona")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def public_document(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's generated document, made Persona's: metadata, examples, error outcomes, security."""
    spec["info"] = {
        "title": TITLE,
        "description": DESCRIPTION,
        "version": package_version(),
        "license": {"name": "Apache-2.0"},
    }
    paths = spec.get("paths", {})
    for private in PRIVATE_PATHS:
        paths.pop(private, None)
    add_security(spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["PersonaError"] = ERROR_SCHEMA
    for path in SCORING_PATHS:
        operation = paths.get(path, {}).get("post")
        if operation is None:
            continue
        operation.setdefault("responses", {}).update(ERROR_RESPONSES)
        media = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if media is not None:
            media["examples"] = {
                name: {"summary": name, "value": value} for name, value in REQUEST_EXAMPLES[path].items()
            }
    return spec


class OpenApiMiddleware:
    """Pure ASGI middleware: serves `public_document` of BentoML's `/docs.json`."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http" or scope.get("path") != "/docs.json":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = json.dumps(public_document(json.loads(body))).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 500), "headers": headers})
        await send({"type": "http.response.body", "body": body})

"""API-key authentication: `Authorization: Bearer <key>`, keys from PERSONA_API_KEYS (comma-separated).

Keys are compared as SHA-256 digests in constant time and never logged. Health, readiness, metrics and
the OpenAPI document stay open so that orchestrators and scanners can reach them, and so do the API docs
page's own files (`/static_content/...`: Swagger UI's script and styles, no data), without which the page
at `/` is blank. The dashboard under `/dashboard` checks access itself: a session cookie from its sign-in
page, or the same bearer key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/", "/docs"})
OPEN_STATIC_PREFIX = "/static_content/"  # the Swagger UI bundle BentoML serves for the page at `/`
SELF_GUARDED_PREFIX = "/dashboard"  # serving/dashboard: session cookie or bearer key, checked there
MIN_KEY_LENGTH = 16
ENV_VAR = "PERSONA_API_KEYS"


class ApiKeyError(ValueError):
    """PERSONA_API_KEYS is missing or holds a key that is too short."""


def load_api_keys(environ: dict[str, str] | None = None) -> list[bytes]:
    """Digests of the configured keys. Refuses an empty list and short (placeholder) keys."""
    raw = (environ if environ is not None else os.environ).get(ENV_VAR, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ApiKeyError(
            f"{ENV_VAR} is not set: give one or more comma-separated API keys "
            "(e.g. export PERSONA_API_KEYS=$(python -c 'import secrets; print(secrets.token_urlsafe(24))'))"
        )
    short = [i for i, k in enumerate(keys, start=1) if len(k) < MIN_KEY_LENGTH]
    if short:
        raise ApiKeyError(f"{ENV_VAR}: key number(s) {short} shorter than {MIN_KEY_LENGTH} characters")
    return [hashlib.sha256(k.encode()).digest() for k in keys]


def is_authorized(header_value: str | None, digests: list[bytes]) -> bool:
    if not header_value:
        return False
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    candidate = hashlib.sha256(token.strip().encode()).digest()
    matched = False
    for digest in digests:  # no early exit: constant time over the key list
        matched |= hmac.compare_digest(candidate, digest)
    return matched


def is_open(path: str, method: str) -> bool:
    """Whether a request needs no API key here (see the module doc)."""
    if method == "OPTIONS" or path in OPEN_PATHS:
        return True
    if path.startswith(OPEN_STATIC_PREFIX) and method in ("GET", "HEAD"):
        return True
    return path == SELF_GUARDED_PREFIX or path.startswith(SELF_GUARDED_PREFIX + "/")


class ApiKeyMiddleware:
    """Pure ASGI middleware: 401 with a JSON body unless the bearer key is valid."""

    def __init__(self, app, digests: list[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.digests = digests if digests is not None else load_api_keys()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http" or is_open(scope.get("path", ""), scope.get("method", "GET")):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if is_authorized(header, self.digests):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "unauthorized",
                "detail": "send 'Authorization: Bearer <API key>' (see PERSONA_API_KEYS)",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="persona"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def add_security(spec: dict) -> dict:
    """Declare `Authorization: Bearer` on every operation outside OPEN_PATHS."""
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from PERSONA_API_KEYS",
    }
    for path, operations in spec.get("paths", {}).items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            if isinstance(operation, dict):
                operation["security"] = [{"bearerAuth": []}]
                operation.setdefault("responses", {})["401"] = {"description": "missing or invalid API key"}
    return spec

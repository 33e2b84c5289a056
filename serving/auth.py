"""API-key authentication: `Authorization: Bearer <key>`, keys from PERSONA_API_KEYS (comma-separated).

Keys are compared as SHA-256 digests in constant time and never logged. Health, readiness, metrics and
the OpenAPI document stay open so that orchestrators and scanners can reach them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/", "/docs"})
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


class ApiKeyMiddleware:
    """Pure ASGI middleware: 401 with a JSON body unless the bearer key is valid."""

    def __init__(self, app, digests: list[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.digests = digests if digests is not None else load_api_keys()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http" or scope.get("path", "") in OPEN_PATHS or scope.get("method") == "OPTIONS":
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

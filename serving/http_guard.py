"""The request surface, exactly as documented: a pure ASGI middleware in front of the API routes.

- `Content-Type` other than `application/json` (UTF-8) -> 415 (multipart and forms included: the API
  takes JSON only, so a multipart body is never parsed); a missing one is read as JSON, as BentoML does.
- bodies over `serving.max_body_bytes` -> 413, decided from `Content-Length` before anything is read,
  or while reading a chunked body (never more than the limit is held);
- every 4xx answer of an API route has the body the OpenAPI document declares,
  `{"error": str, "detail": str}` (BentoML's validation errors give `detail` as a list, and some of its
  4xx a list as the whole body), and is logged as ONE warning line, without traceback (BentoML logs each
  4xx as an ERROR with a traceback: that record is dropped by `QuietClientErrors`);
- `/docs.json` declares the 413 and 415 answers of the API routes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("persona.serving.http")

API_PREFIX = "/v1/"
JSON_TYPES = frozenset({"application/json"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def media_type_problem(content_type: str | None) -> str | None:
    """Why this Content-Type cannot be taken (None: it is JSON in UTF-8, or absent)."""
    if content_type is None or not content_type.strip():
        return None
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in JSON_TYPES:
        return f"Content-Type must be application/json (got {media or 'nothing'!r})"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"application/json must be UTF-8 (got charset {value.strip()!r})"
    return None


def error_detail(value: Any) -> str:
    """BentoML's / pydantic's error detail as one readable string: `loc: message; ...`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "msg" in value:
            loc = ".".join(str(p) for p in value.get("loc", ()) if p not in ("body",))
            return f"{loc}: {value['msg']}" if loc else str(value["msg"])
        return json.dumps(value, default=str)
    if isinstance(value, list | tuple):
        return "; ".join(error_detail(v) for v in value)
    return str(value)


def normalize_error_body(body: bytes, status: int) -> dict[str, str]:
    """Any 4xx body as `{"error": str, "detail": str}` (the declared schema)."""
    try:
        data: Any = json.loads(body) if body else {}
    except ValueError:
        data = {"error": body.decode("utf-8", "replace")[:500]}
    if isinstance(data, list):  # BentoML answers some 4xx with a one-element list
        data = data[0] if len(data) == 1 and isinstance(data[0], dict) else {"detail": data}
    if not isinstance(data, dict):
        data = {"detail": data}
    error = data.get("error")
    detail = error_detail(data.get("detail"))
    if not isinstance(error, str) or not error:
        error = "invalid_request" if status == 400 else f"http_{status}"
    if not detail:
        detail = error
    return {"error": error, "detail": detail}


def _json_response(status: int, payload: dict[str, str], extra: list[tuple[bytes, bytes]] = ()) -> tuple:  # type: ignore[assignment]
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    return {"type": "http.response.start", "status": status, "headers": headers}, {
        "type": "http.response.body",
        "body": body,
    }


class QuietClientErrors(logging.Filter):
    """Drops BentoML's ERROR-with-traceback record of a client error (4xx): `RequestGuard` logs those
    as one warning line. Server errors (5xx, anything else) keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        exc = record.exc_info[1]
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)


_FILTER = QuietClientErrors()


def install_log_filter() -> None:
    """Attach `QuietClientErrors` to the logger BentoML's `log_exception` writes to (idempotent)."""
    logger = logging.getLogger("bentoml._internal.server.http_app")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


class RequestGuard:
    """Pure ASGI middleware: content type, body size and the shape and logging of 4xx answers."""

    def __init__(self, app: Any, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        install_log_filter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if path == "/docs.json":
            await self._openapi(scope, receive, send)
            return
        if not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method in BODY_METHODS:
            problem = media_type_problem(_header(scope, b"content-type"))
            if problem is not None:
                await self._refuse(scope, send, 415, "unsupported_media_type", problem)
                return
            length = _header(scope, b"content-length")
            if length is not None:
                if not length.strip().isdigit():
                    await self._refuse(scope, send, 400, "invalid_request", "Content-Length is not a number")
                    return
                if int(length) > self.max_body_bytes:
                    await self._refuse(scope, send, 413, "payload_too_large", self._too_large())
                    return
            body = await self._read(receive)
            if body is None:
                await self._refuse(scope, send, 413, "payload_too_large", self._too_large())
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, self._shape_errors(scope, send))

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body_bytes:,} bytes (serving.max_body_bytes)"

    async def _read(self, receive: Any) -> bytes | None:
        """The whole body, or None as soon as it exceeds the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: dict[str, Any], send: Any, status: int, error: str, detail: str) -> None:
        log.warning("%s %s -> %d %s: %s", scope.get("method"), scope.get("path"), status, error, detail)
        start, body = _json_response(status, {"error": error, "detail": detail})
        await send(start)
        await send(body)

    def _shape_errors(self, scope: dict[str, Any], send: Any) -> Any:
        """A `send` that rewrites 4xx JSON bodies to the declared schema and logs them in one line."""
        state: dict[str, Any] = {"start": None, "chunks": []}

        async def shaped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if 400 <= message["status"] < 500 and not _admission_refusal(message):
                    state["start"] = message  # hold it: the body (and its length) will change
                    return
                await send(message)
                return
            start = state["start"]
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            state["chunks"].append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = start["status"]
            payload = normalize_error_body(b"".join(state["chunks"]), status)
            log.warning(
                "%s %s -> %d %s: %s",
                scope.get("method"),
                scope.get("path"),
                status,
                payload["error"],
                payload["detail"][:500],
            )
            kept = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            new_start, new_body = _json_response(status, payload, kept)
            await send(new_start)
            await send(new_body)

        return shaped

    async def _openapi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = json.dumps(declare_guard_responses(json.loads(body), self.max_body_bytes)).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 500), "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _admission_refusal(start: dict[str, Any]) -> bool:
    """serving/admission.py's 429: already in the declared shape, and logged there in summary (one
    warning line per refused request would itself load an overloaded service)."""
    return start["status"] == 429 and any(k.lower() == b"retry-after" for k, _ in start.get("headers", []))


def _replay(body: bytes, original: Any) -> Any:
    """A `receive` that hands the app the body already read, then waits on the real one (disconnect)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


def declare_guard_responses(spec: dict[str, Any], max_body_bytes: int) -> dict[str, Any]:
    """Declare on every API operation what this guard answers: 400 (schema made explicit), 413, 415,
    and that the JSON body is required (BentoML leaves `requestBody.required` out)."""
    content = {"application/json": {"schema": _ERROR_SCHEMA}}
    for path, operations in spec.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if isinstance(operation.get("requestBody"), dict):
                operation["requestBody"]["required"] = True  # every API route needs its JSON body
            responses = operation.setdefault("responses", {})
            responses["400"] = {
                "description": "invalid request: malformed JSON or a value outside the schema; `detail` says "
                "which field and why",
                "content": content,
            }
            responses["413"] = {
                "description": f"request body larger than serving.max_body_bytes ({max_body_bytes:,} bytes)",
                "content": content,
            }
            responses["415"] = {
                "description": "Content-Type is not application/json (UTF-8)",
                "content": content,
            }
    return spec

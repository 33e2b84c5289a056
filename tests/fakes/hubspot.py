"""A local HTTP test double of HubSpot's CRM v3 contacts batch upsert, with fault injection.

Follows the documented contract: `POST /crm/v3/objects/contacts/batch/upsert` with
`{"inputs": [{"idProperty", "id", "properties", "objectWriteTraceId"?}]}`, at most 100 inputs,
`Authorization: Bearer <token>`; 200 `{"status": "COMPLETE", "results": [...]}`; a 400 error body
(`status`, `message`, `correlationId`, `category`) when any input is invalid; 207 multi-status with
per-input `errors[].context.objectWriteTraceId` when `multi_status` is on and every input has a trace id;
429 with `Retry-After` and `X-HubSpot-RateLimit-*` headers (`rate_limit_next`), or a rolling burst limit
(`limit_max` requests per `limit_interval_ms`, as HubSpot's ten-secondly limit: 429 without Retry-After). `GET /crm/v3/objects/contacts/{id}?idProperty=`
reads a contact back. `POST /crm/v3/objects/contacts/batch/read` (`idProperty`, `inputs: [{id}]`) answers
the contacts' record ids. Lists (HubSpot Lists API v3, MANUAL lists of contacts, objectTypeId `0-1`):
`POST /crm/v3/lists` creates one (`name`, `objectTypeId`, `processingType`) -> `{"list": {listId, ...}}`
(409 if the name exists); `GET /crm/v3/lists/object-type-id/0-1/name/{name}` finds one (404 if none);
`PUT /crm/v3/lists/{listId}/memberships/add-and-remove` with `recordIdsToAdd` / `recordIdsToRemove`
-> `recordIdsAdded`, `recordIdsRemoved`, `recordIdsMissing` (unknown record ids); `GET
/crm/v3/lists/{listId}/memberships` -> `results: [{recordId}]`. `members(name)` reads a list in tests.
Activities (CRM v3 objects `tasks` and `notes`): `POST /crm/v3/objects/{tasks|notes}/batch/create` with
`inputs: [{properties, associations: [{to: {id}, types: [{associationCategory: HUBSPOT_DEFINED,
associationTypeId}]}], objectWriteTraceId?}]`, at most 100 inputs, `hs_timestamp` required, associations
only to existing contacts with the default type (204 task -> contact, 202 note -> contact), else 400
VALIDATION_ERROR for the whole batch; 201 `{"status": "COMPLETE", "results": [{id, properties, ...}]}`.
`POST /crm/v3/objects/{tasks|notes}/search` with `filterGroups` (at most 5, each at most 6 filters; `EQ`
and `CONTAINS_TOKEN`) -> `{"total", "results"}`. `activities(kind)` reads them in tests.

It records what happened: `applied` gets one (id, property, value) entry each time a stored property
value actually changes (re-sending the same value changes nothing, as in HubSpot), `received` counts
inputs received, `statuses` the status of every answer, `batches` the `objectWriteTraceId`s each
applied request carried (whether or not its answer reached the client), so a test can see which
inputs were applied twice. `refuse_connections()` closes the listening socket (clients get
ECONNREFUSED, as from a CRM that is down) until `accept_connections()` reopens the same port.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
BATCH_READ = "/crm/v3/objects/contacts/batch/read"
LISTS = "/crm/v3/lists"
CONTACT = "/crm/v3/objects/contacts/"
ACTIVITY_KINDS = {"tasks": 204, "notes": 202}  # HubSpot-defined association type id to a contact
MAX_FILTER_GROUPS, MAX_FILTERS = 5, 6


@dataclass
class Faults:
    """What goes wrong, set by tests at any time (guarded by the server's lock)."""

    fail_next: int = 0  # answer the next N requests with `fail_status`
    fail_status: int = 503
    fail_requests: frozenset[int] = frozenset()  # these request numbers (1-based) get `fail_status`
    down_until: float = 0.0  # time.monotonic() before which every request gets 503
    rate_limit_next: int = 0  # answer the next N requests with 429
    retry_after: str | None = "1"  # Retry-After header of those 429s (None: only rate-limit headers)
    rate_limit_interval_ms: int = 1000
    delay: float = 0.0  # seconds before handling each request (a slow CRM)
    lost_ack_next: int = 0  # the next N requests that apply changes answer only after `lost_ack_delay`
    lost_ack_delay: float = 0.0  # (longer than the client's time-out: applied, acknowledgement lost)
    reject: Callable[[dict[str, Any]], str | None] | None = None  # input -> reason to refuse it, or None
    multi_status: bool = False  # 207 with per-input errors instead of 400 for the whole batch
    # HubSpot's burst limit: at most `limit_max` requests per rolling `limit_interval_ms`; beyond it 429
    # with policyName TEN_SECONDLY_ROLLING and the X-HubSpot-RateLimit-* headers (no Retry-After)
    limit_max: int | None = None
    limit_interval_ms: int = 10_000


@dataclass
class Contact:
    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str


@dataclass
class _State:
    contacts: dict[str, Contact] = field(default_factory=dict)  # by id-property value
    applied: list[tuple[str, str, str]] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)  # id -> inputs received
    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    batches: list[list[str]] = field(default_factory=list)  # trace ids of each applied request
    window: list[float] = field(default_factory=list)  # monotonic times of requests let through
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)  # listId -> {name, members: set}
    activities: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {k: [] for k in ACTIVITY_KINDS}
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeHubSpot:
    """`with FakeHubSpot(token="t") as crm: ... crm.url ...` serves on 127.0.0.1, a free port."""

    def __init__(self, *, token: str | None = "test-token") -> None:
        self.token = token
        self.faults = Faults()
        self.state = _State()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeHubSpot:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
                return

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, "GET")

            def do_PUT(self) -> None:  # noqa: N802
                fake._handle(self, "PUT")

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", port or self._port), Handler)
        self._port = self._server.server_address[1]
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def refuse_connections(self) -> None:
        """The CRM goes down: its port is closed, connections are refused."""
        self.stop()

    def accept_connections(self) -> None:
        """The CRM is back, on the same port."""
        if self._server is None:
            self.start(self._port)

    def __enter__(self) -> FakeHubSpot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._port, "start() the fake first"
        return f"http://127.0.0.1:{self._port}"

    # -- what tests read -------------------------------------------------------------------------
    @property
    def applied(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.state.applied)

    def property_of(self, record_id: str, name: str) -> str | None:
        with self.lock:
            contact = self.state.contacts.get(record_id)
            return None if contact is None else contact.properties.get(name)

    def set_faults(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                if not hasattr(self.faults, key):
                    raise AttributeError(f"no fault named {key}")
                setattr(self.faults, key, value)

    # -- HTTP --------------------------------------------------------------------------------------
    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers=None
    ) -> None:  # noqa: ANN001
        payload = json.dumps(body).encode()
        with self.lock:
            self.state.statuses[status] += 1
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json;charset=utf-8")
            handler.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (time-out or killed): what it missed is what we test

    def _error(self, status: int, message: str, category: str, **extra: Any) -> dict[str, Any]:
        return {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
            **extra,
        }

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self.lock:
            self.state.requests += 1
            faults = Faults(**vars(self.faults))
            # one fault per request, in this order: 429, then 5xx
            if self.faults.rate_limit_next > 0:
                self.faults.rate_limit_next -= 1
                faults.fail_next = 0
            elif self.faults.fail_next > 0:
                self.faults.fail_next -= 1
            if self.state.requests in self.faults.fail_requests:
                faults.fail_next = max(faults.fail_next, 1)
            remaining = None
            if faults.limit_max is not None and faults.rate_limit_next <= 0:
                now = time.monotonic()
                horizon = now - faults.limit_interval_ms / 1000
                self.state.window = [t for t in self.state.window if t > horizon]
                if len(self.state.window) >= faults.limit_max:
                    remaining = 0
                else:
                    self.state.window.append(now)
                    remaining = faults.limit_max - len(self.state.window)
        if faults.delay:
            time.sleep(faults.delay)
        if self.token is not None and handler.headers.get("Authorization") != f"Bearer {self.token}":
            self._reply(
                handler,
                401,
                self._error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION"),
            )
            return
        if remaining == 0:
            body = {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
            }
            headers = {
                "X-HubSpot-RateLimit-Max": str(faults.limit_max),
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(faults.limit_interval_ms),
            }
            self._reply(handler, 429, body, headers)
            return
        if faults.rate_limit_next > 0:
            headers = {
                "X-HubSpot-RateLimit-Max": "100",
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(faults.rate_limit_interval_ms),
            }
            if faults.retry_after is not None:
                headers["Retry-After"] = faults.retry_after
            body = {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "SECONDLY",
            }
            self._reply(handler, 429, body, headers)
            return
        if faults.fail_next > 0 or time.monotonic() < faults.down_until:
            status = faults.fail_status if faults.fail_next > 0 else 503
            self._reply(handler, status, self._error(status, "internal error", "INTERNAL_ERROR"))
            return
        path = urlparse(handler.path)
        parts = path.path.removeprefix("/crm/v3/objects/").split("/")
        if method == "POST" and parts[0] in ACTIVITY_KINDS and parts[1:] in (["batch", "create"], ["search"]):
            self._activities(handler, parts[0], parts[1], raw, faults)
            return
        if path.path.startswith(LISTS) or path.path == BATCH_READ:
            self._lists(handler, method, path.path, raw)
            return
        if method == "GET" and path.path.startswith(CONTACT):
            self._get(handler, path.path[len(CONTACT) :], parse_qs(path.query))
            return
        if method != "POST" or path.path != UPSERT:
            self._reply(handler, 404, self._error(404, f"no route {method} {path.path}", "OBJECT_NOT_FOUND"))
            return
        self._upsert(handler, raw, faults)

    def members(self, name: str) -> set[str]:
        """Record ids in the list called `name` (empty when there is no such list)."""
        with self.lock:
            for held in self.state.lists.values():
                if held["name"] == name:
                    return set(held["members"])
        return set()

    def activities(self, kind: str) -> list[dict[str, Any]]:
        """The tasks or notes created, each {id, properties, contacts (associated record ids)}."""
        with self.lock:
            return [dict(a) for a in self.state.activities[kind]]

    def _activities(
        self, handler: BaseHTTPRequestHandler, kind: str, verb: str, raw: bytes, faults: Faults
    ) -> None:
        try:
            body = json.loads(raw)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            self._reply(handler, 400, self._error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR"))
            return
        if verb == "search":
            self._search(handler, kind, body)
            return
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) > 100:
            message = "Batch size of 100 inputs exceeded" if isinstance(inputs, list) else "inputs required"
            self._reply(handler, 400, self._error(400, message, "VALIDATION_ERROR"))
            return
        with self.lock:
            known = {c.id for c in self.state.contacts.values()}
        problems = []
        for index, item in enumerate(inputs):
            props = item.get("properties") if isinstance(item, dict) else None
            if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
                problems.append(f"inputs[{index}]: properties must map names to string values")
                continue
            if not props.get("hs_timestamp"):
                problems.append(f"inputs[{index}]: hs_timestamp is required")
            for assoc in item.get("associations") or []:
                to = str((assoc.get("to") or {}).get("id"))
                types = assoc.get("types") or []
                if to not in known:
                    problems.append(f"inputs[{index}]: no contact with id {to} to associate")
                if not types or any(
                    t.get("associationCategory") != "HUBSPOT_DEFINED"
                    or t.get("associationTypeId") != ACTIVITY_KINDS[kind]
                    for t in types
                ):
                    problems.append(f"inputs[{index}]: invalid association type for {kind} -> contacts")
            if faults.reject is not None and (reason := faults.reject(item)):
                problems.append(f"inputs[{index}]: {reason}")
        if problems:
            self._reply(
                handler,
                400,
                self._error(400, problems[0], "VALIDATION_ERROR", errors=[{"message": m} for m in problems]),
            )
            return
        started = _now()
        results = []
        with self.lock:
            lose_ack = self.faults.lost_ack_next > 0
            if lose_ack:
                self.faults.lost_ack_next -= 1
            for item in inputs:
                held = self.state.activities[kind]
                stamp = _now()
                record = {
                    "id": str(len(self.state.activities["tasks"]) + len(self.state.activities["notes"]) + 1),
                    "properties": dict(item["properties"]),
                    "contacts": [str(a["to"]["id"]) for a in item.get("associations") or []],
                    "createdAt": stamp,
                }
                held.append(record)
                result = {
                    "id": record["id"],
                    "properties": dict(item["properties"]),
                    "createdAt": stamp,
                    "updatedAt": stamp,
                    "archived": False,
                }
                if item.get("objectWriteTraceId"):
                    result["objectWriteTraceId"] = item["objectWriteTraceId"]
                results.append(result)
        if lose_ack:
            time.sleep(faults.lost_ack_delay)
        self._reply(
            handler,
            201,
            {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _now()},
        )

    def _search(self, handler: BaseHTTPRequestHandler, kind: str, body: dict[str, Any]) -> None:
        groups = body.get("filterGroups") or []
        if len(groups) > MAX_FILTER_GROUPS or any(len(g.get("filters") or []) > MAX_FILTERS for g in groups):
            self._reply(
                handler,
                400,
                self._error(
                    400,
                    f"at most {MAX_FILTER_GROUPS} filterGroups of {MAX_FILTERS} filters",
                    "VALIDATION_ERROR",
                ),
            )
            return

        def holds(props: dict[str, str], rule: dict[str, Any]) -> bool:
            value = props.get(rule.get("propertyName", ""))
            if rule.get("operator") == "EQ":
                return value == str(rule.get("value"))
            if rule.get("operator") == "CONTAINS_TOKEN":
                return value is not None and str(rule.get("value")).lower() in re.split(r"\W+", value.lower())
            return False

        with self.lock:
            found = [
                a
                for a in self.state.activities[kind]
                if not groups
                or any(all(holds(a["properties"], f) for f in g.get("filters") or []) for g in groups)
            ]
        limit = int(body.get("limit") or 10)
        results = [
            {
                "id": a["id"],
                "properties": dict(a["properties"]),
                "createdAt": a["createdAt"],
                "archived": False,
            }
            for a in found[:limit]
        ]
        self._reply(handler, 200, {"total": len(found), "results": results})

    def record_id(self, id_value: str) -> str | None:
        with self.lock:
            contact = self.state.contacts.get(id_value)
        return None if contact is None else contact.id

    def _lists(self, handler: BaseHTTPRequestHandler, method: str, path: str, raw: bytes) -> None:
        body = json.loads(raw) if raw else {}
        parts = [unquote(p) for p in path[len(LISTS) :].strip("/").split("/")]
        with self.lock:
            lists = self.state.lists
            if path == BATCH_READ and method == "POST":
                keys = [str(item["id"]) for item in body.get("inputs", [])]
                found = [(k, self.state.contacts.get(k)) for k in keys]
                prop = body.get("idProperty")
                results = [{"id": c.id, "properties": {prop: key}} for key, c in found if c is not None]
                reply: tuple[int, dict[str, Any]] = (200, {"status": "COMPLETE", "results": results})
            elif method == "POST" and parts == [""]:
                if any(held["name"] == body.get("name") for held in lists.values()):
                    reply = (409, self._error(409, "list name already exists", "CONFLICT"))
                elif body.get("objectTypeId") != "0-1" or body.get("processingType") != "MANUAL":
                    reply = (
                        400,
                        self._error(400, "objectTypeId 0-1 and processingType MANUAL", "VALIDATION_ERROR"),
                    )
                else:
                    list_id = str(len(lists) + 1)
                    lists[list_id] = {"name": body["name"], "members": set()}
                    reply = (
                        200,
                        {
                            "list": {
                                "listId": list_id,
                                "name": body["name"],
                                "processingType": "MANUAL",
                                "objectTypeId": "0-1",
                            }
                        },
                    )
            elif method == "GET" and parts[:3] == ["object-type-id", "0-1", "name"] and len(parts) == 4:
                match = [(k, v) for k, v in lists.items() if v["name"] == parts[3]]
                reply = (
                    (200, {"list": {"listId": match[0][0], "name": parts[3], "processingType": "MANUAL"}})
                    if match
                    else (404, self._error(404, f"list {parts[3]} not found", "OBJECT_NOT_FOUND"))
                )
            elif len(parts) >= 2 and parts[0] in lists and parts[1] == "memberships":
                held = lists[parts[0]]
                if method == "GET" and len(parts) == 2:
                    reply = (200, {"results": [{"recordId": r} for r in sorted(held["members"])]})
                elif method == "PUT" and parts[2:] == ["add-and-remove"]:
                    known = {c.id for c in self.state.contacts.values()}
                    add = [str(r) for r in body.get("recordIdsToAdd", [])]
                    remove = [str(r) for r in body.get("recordIdsToRemove", [])]
                    missing = [r for r in add + remove if r not in known]
                    added = [r for r in add if r in known and r not in held["members"]]
                    removed = [r for r in remove if r in known and r in held["members"]]
                    held["members"] |= set(added)
                    held["members"] -= set(removed)
                    reply = (
                        200,
                        {"recordIdsAdded": added, "recordIdsRemoved": removed, "recordIdsMissing": missing},
                    )
                else:
                    reply = (404, self._error(404, f"no route {method} {path}", "OBJECT_NOT_FOUND"))
            else:
                reply = (404, self._error(404, f"no route {method} {path}", "OBJECT_NOT_FOUND"))
        self._reply(handler, *reply)

    def _get(self, handler: BaseHTTPRequestHandler, record_id: str, query: dict[str, list[str]]) -> None:
        with self.lock:
            contact = self.state.contacts.get(record_id)
        if contact is None:
            self._reply(handler, 404, self._error(404, "resource not found", "OBJECT_NOT_FOUND"))
            return
        self._reply(
            handler,
            200,
            {
                "id": contact.id,
                "properties": dict(contact.properties),
                "createdAt": contact.created_at,
                "updatedAt": contact.updated_at,
                "archived": False,
            },
        )

    def _upsert(self, handler: BaseHTTPRequestHandler, raw: bytes, faults: Faults) -> None:
        try:
            inputs = json.loads(raw)["inputs"]
            assert isinstance(inputs, list)
        except (ValueError, KeyError, AssertionError, TypeError):
            self._reply(handler, 400, self._error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR"))
            return
        if len(inputs) > 100:
            self._reply(
                handler, 400, self._error(400, "Batch size of 100 inputs exceeded", "VALIDATION_ERROR")
            )
            return
        problems: dict[int, str] = {}
        seen: set[str] = set()
        for index, item in enumerate(inputs):
            if not isinstance(item, dict) or not item.get("id") or not item.get("idProperty"):
                problems[index] = "input needs id and idProperty"
            elif not isinstance(item.get("properties"), dict) or not all(
                isinstance(v, str) for v in item["properties"].values()
            ):
                problems[index] = "properties must map names to string values"
            elif item["id"] in seen:
                problems[index] = f"Duplicate IDs found in batch input: [{item['id']}]"
            elif faults.reject is not None and (reason := faults.reject(item)):
                problems[index] = reason
            else:
                seen.add(item["id"])
        with self.lock:
            for item in inputs:
                if isinstance(item, dict) and item.get("id"):
                    self.state.received[str(item["id"])] += 1
        traced = all(isinstance(i, dict) and i.get("objectWriteTraceId") for i in inputs)
        if problems and not (faults.multi_status and traced):
            first = min(problems)
            self._reply(
                handler,
                400,
                self._error(
                    400,
                    f"Property values were not valid: input {first}: {problems[first]}",
                    "VALIDATION_ERROR",
                    errors=[{"message": m, "in": f"inputs[{i}]"} for i, m in sorted(problems.items())],
                ),
            )
            return
        started = _now()
        results = []
        with self.lock:
            lose_ack = self.faults.lost_ack_next > 0
            if lose_ack:
                self.faults.lost_ack_next -= 1
            for index, item in enumerate(inputs):
                if index in problems:
                    continue
                results.append(self._apply(item))
            self.state.batches.append(
                [str(item.get("objectWriteTraceId")) for i, item in enumerate(inputs) if i not in problems]
            )
        if lose_ack:
            time.sleep(faults.lost_ack_delay)
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": _now(),
        }
        if problems:
            body["numErrors"] = len(problems)
            body["errors"] = [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": problems[i],
                    "context": {"objectWriteTraceId": [inputs[i]["objectWriteTraceId"]]},
                }
                for i in sorted(problems)
            ]
            self._reply(handler, 207, body)
            return
        self._reply(handler, 200, body)

    def _apply(self, item: dict[str, Any]) -> dict[str, Any]:
        # caller holds the lock
        record_id = str(item["id"])
        stamp = _now()
        contact = self.state.contacts.get(record_id)
        is_new = contact is None
        if contact is None:
            contact = Contact(
                id=str(len(self.state.contacts) + 1),
                properties={item["idProperty"]: record_id},
                created_at=stamp,
                updated_at=stamp,
            )
            self.state.contacts[record_id] = contact
        for name, value in item["properties"].items():
            if contact.properties.get(name) != value:
                contact.properties[name] = value
                contact.updated_at = stamp
                self.state.applied.append((record_id, name, value))
        result = {
            "id": contact.id,
            "properties": dict(contact.properties),
            "createdAt": contact.created_at,
            "updatedAt": contact.updated_at,
            "archived": False,
            "new": is_new,
        }
        if item.get("objectWriteTraceId"):
            result["objectWriteTraceId"] = item["objectWriteTraceId"]
        return result

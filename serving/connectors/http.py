"""A REST CRM following HubSpot's CRM v3 contract: batch upsert of contact properties.

`POST {url}/crm/v3/objects/contacts/batch/upsert` with
`{"inputs": [{"idProperty": P, "id": ID, "objectWriteTraceId": T, "properties": {...}}]}`, at most 100
inputs per request, `Authorization: Bearer <token>`. Responses handled:
- 200/201: every input applied.
- 207 multi-status: `errors[]` name the failed inputs by `context.objectWriteTraceId` (we send a unique
  trace id per input for exactly this); the rest were applied.
- 400: the request as a whole was refused -> BatchRejected (the dispatcher splits it).
- 401/403: configuration problem -> CrmError (nothing is settled, the dispatcher retries later).
- 429: RateLimited with `Retry-After` or HubSpot's `X-HubSpot-RateLimit-Interval-Milliseconds`.
- 5xx, time-outs, connection errors: TransientCrmError.
Upserting a property to the value it already has changes nothing, so a re-sent batch is harmless.
The token is never logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import httpx

from core.errors import CrmError
from serving.connectors.base import (
    BatchRejected,
    Connector,
    ContactResolver,
    RateLimited,
    SendResult,
    TransientCrmError,
)
from serving.outbox import OutboxEntry

log = logging.getLogger(__name__)

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
MAX_INPUTS = 100  # HubSpot's documented batch limit
REJECTS_BATCH = (400, 409, 413, 422)  # the content was refused: split the batch to find the bad record


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date Retry-After: fall back to our own back-off


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        parts = [str(body.get("category") or body.get("errorType") or ""), str(body.get("message") or "")]
        return ": ".join(p for p in parts if p) or response.text[:300]
    return response.text[:300]


class HttpConnector(Connector):
    """Batch-upserts tag properties onto CRM contacts identified by `id_property`."""

    name = "http"
    max_batch = MAX_INPUTS

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        id_property: str,
        resolver: ContactResolver,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.id_property = id_property
        self.resolver = resolver
        self.client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )

    def _inputs(self, entries: list[OutboxEntry]) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
        """One input per contact record (HubSpot refuses duplicate ids in a batch), properties merged;
        returns the inputs and trace id -> outbox ids."""
        contacts = self.resolver.contacts_for({e.change.customer_id for e in entries})
        records: dict[str, dict[str, Any]] = {}
        owners: dict[str, list[int]] = {}
        keys: dict[str, list[str]] = {}
        for entry in sorted(entries, key=lambda e: e.id):  # later entries win a shared field
            for record_id in contacts.get(entry.change.customer_id, []):
                props = records.setdefault(record_id, {})
                props[entry.change.crm_field] = (
                    entry.change.new_value if entry.change.new_value is not None else ""
                )
                owners.setdefault(record_id, []).append(entry.id)
                keys.setdefault(record_id, []).append(entry.change.idempotency_key)
        inputs, by_trace = [], {}
        for record_id, props in records.items():
            trace = hashlib.sha1("\n".join(sorted(keys[record_id])).encode()).hexdigest()[:24]
            inputs.append(
                {
                    "idProperty": self.id_property,
                    "id": record_id,
                    "objectWriteTraceId": trace,
                    "properties": props,
                }
            )
            by_trace[trace] = owners[record_id]
        return inputs, by_trace

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        """Upsert `entries` (customers without a CRM contact are settled with nothing to write)."""
        inputs, by_trace = self._inputs(entries)
        result = SendResult()
        for start in range(0, len(inputs), MAX_INPUTS):
            part = self._post(inputs[start : start + MAX_INPUTS], by_trace)
            result.rejected.update(part.rejected)
            if part.pause_for:
                result.pause_for = max(result.pause_for or 0.0, part.pause_for)
        return result

    def _post(self, inputs: list[dict[str, Any]], by_trace: dict[str, list[int]]) -> SendResult:
        try:
            response = self.client.post(UPSERT_PATH, json={"inputs": inputs})
        except httpx.TimeoutException as exc:
            raise TransientCrmError(f"CRM {self.base_url} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientCrmError(
                f"CRM {self.base_url} unreachable ({type(exc).__name__}: {exc})"
            ) from None
        status = response.status_code
        headers = response.headers
        interval = _seconds(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
        interval_s = interval / 1000 if interval is not None else None
        if status == 429:
            retry_after = _seconds(headers.get("Retry-After"))
            raise RateLimited(
                f"CRM {self.base_url} rate limit (429): {_error_message(response)}",
                retry_after=retry_after if retry_after is not None else interval_s,
            )
        if status >= 500:
            raise TransientCrmError(
                f"CRM {self.base_url} error {status}: {_error_message(response)}",
                retry_after=_seconds(headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise CrmError(
                f"CRM {self.base_url} refused the credentials ({status}): {_error_message(response)}",
                hint="check PERSONA_CRM__TOKEN and the app's crm.objects.contacts.write scope",
            )
        if status in REJECTS_BATCH:
            raise BatchRejected(
                f"CRM {self.base_url} rejected the batch ({status}): {_error_message(response)}"
            )
        if 400 <= status < 500:  # 404, 405, ...: not the records' fault, nothing to split or dead-letter
            raise CrmError(
                f"CRM {self.base_url} answered {status} to {UPSERT_PATH}: {_error_message(response)}",
                hint="check crm.url (the CRM's base URL, e.g. https://api.hubapi.com)",
            )
        result = SendResult()
        if headers.get("X-HubSpot-RateLimit-Remaining") == "0" and interval_s:
            result.pause_for = interval_s
        if status == 207:
            body = response.json()
            failed: set[str] = set()
            for error in body.get("errors", []):
                context = error.get("context") or {}
                reason = f"{error.get('category', 'ERROR')}: {error.get('message', '')}".strip()
                for trace in context.get("objectWriteTraceId", []):
                    failed.add(trace)
                    for entry_id in by_trace.get(trace, []):
                        result.rejected[entry_id] = f"CRM rejected the record: {reason}"
            # an input neither confirmed in `results` nor named in `errors` is not assumed delivered
            confirmed = {r.get("objectWriteTraceId") for r in body.get("results", [])}
            for item in inputs:
                trace = item["objectWriteTraceId"]
                if trace not in confirmed and trace not in failed:
                    for entry_id in by_trace.get(trace, []):
                        result.rejected[entry_id] = "CRM answered 207 without confirming this record"
        elif status not in (200, 201):
            raise TransientCrmError(f"CRM {self.base_url} answered an unexpected {status}")
        return result

    def close(self) -> None:
        self.client.close()

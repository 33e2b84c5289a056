"""A REST CRM following HubSpot's CRM v3 contract: batch upsert of contact properties.

`POST {url}/crm/v3/objects/contacts/batch/upsert` with
`{"inputs": [{"idProperty": P, "id": ID, "objectWriteTraceId": T, "properties": {...}}]}`, at most 100
inputs per request, `Authorization: Bearer <token>`. Responses handled:
- 200/201: every input applied.
- 207 multi-status: `errors[]` name the failed inputs by `context.objectWriteTraceId` (we send a unique
  trace id per input for exactly this); the rest were applied.
- 400: the request as a whole was refused -> BatchRejected (the dispatcher splits it).
- 401/403: configuration problem -> CrmError (nothing is settled, the dispatcher retries later).
- 429: RateLimited with `Retry-After` (seconds or an HTTP date) or HubSpot's
  `X-HubSpot-RateLimit-Interval-Milliseconds`.
- 5xx, time-outs, connection errors: TransientCrmError (connection errors, time-outs and 502/503/504
  mark an outage: the dispatcher's circuit breaker opens).
HubSpot has no conditional write, so exactly-once is approached from our side: a request carries only
the latest value per (record, property) (older pending values are superseded in the outbox), each
request holds at most 100 records (`split`), and the dispatcher records each acknowledgement before
the next request. Upserting a property to the value it already has changes nothing, so the one request
in flight at a crash is the only thing that can be sent twice, and sending it again is harmless.
The token is never logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from core.errors import CrmError
from core.redact import mask_urls
from serving.connectors.base import (
    BatchRejected,
    Connector,
    RateLimited,
    SendResult,
    TransientCrmError,
    no_record_reason,
)
from serving.outbox import OutboxEntry
from serving.record_keys import RecordKeys

log = logging.getLogger(__name__)

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
MAX_INPUTS = 100  # HubSpot's documented batch limit
REJECTS_BATCH = (400, 409, 413, 422)  # the content was refused: split the batch to find the bad record
OUTAGE = (502, 503, 504)  # the CRM (or its gateway) is down as a whole, not just this request


def _seconds(value: str | None) -> float | None:
    """A header holding a number of seconds (or milliseconds, scaled by the caller)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds (`120`) or an HTTP date
    (`Wed, 21 Oct 2026 07:28:00 GMT`, RFC 9110 10.2.3); a date in the past means now; junk, None."""
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


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
        resolver: RecordKeys,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.where = mask_urls(self.base_url)  # what messages show: never a password in the URL
        self.id_property = id_property
        self.resolver = resolver
        self.client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )

    def split(self, entries: list[OutboxEntry]) -> list[list[OutboxEntry]]:
        """Groups of whole customers whose CRM records fit one request (at most 100 records)."""
        contacts = self.resolver.records_for({e.change.customer_id for e in entries})
        by_customer: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_customer.setdefault(entry.change.customer_id, []).append(entry)
        groups: list[list[OutboxEntry]] = []
        current: list[OutboxEntry] = []
        records: set[str] = set()
        for customer_id, own in by_customer.items():
            mine = set(contacts.get(customer_id, []))
            if current and len(records | mine) > MAX_INPUTS:
                groups.append(current)
                current, records = [], set()
            current.extend(own)
            records |= mine
        if current:
            groups.append(current)
        return groups

    def _inputs(
        self, entries: list[OutboxEntry]
    ) -> tuple[list[dict[str, Any]], dict[str, list[int]], dict[int, str]]:
        """One input per contact record (HubSpot refuses duplicate ids in a batch), properties merged;
        returns the inputs, trace id -> outbox ids, and the entries whose customer has no CRM record."""
        contacts = self.resolver.records_for({e.change.customer_id for e in entries})
        unaddressable = {
            e.id: no_record_reason(e.change.customer_id, self.resolver.record_key)
            for e in entries
            if not contacts.get(e.change.customer_id)
        }
        records: dict[str, dict[str, Any]] = {}
        owners: dict[str, list[int]] = {}
        keys: dict[str, list[str]] = {}
        # the latest change wins a shared (record, field): by sequence, then by queue order
        for entry in sorted(entries, key=lambda e: (e.change.seq or 0, e.id)):
            for record_id in contacts.get(entry.change.customer_id, []):
                props = records.setdefault(record_id, {})
                props[entry.change.crm_field] = (
                    entry.change.new_value if entry.change.new_value is not None else ""
                )
                owners.setdefault(record_id, []).append(entry.id)
                keys.setdefault(record_id, []).append(entry.change.change_id or entry.change.idempotency_key)
        inputs, by_trace = [], {}
        for record_id, props in records.items():
            # the same changes give the same trace id on every retry: the CRM's logs show re-sends
            trace = hashlib.sha1("\n".join([record_id, *sorted(keys[record_id])]).encode()).hexdigest()[:24]
            inputs.append(
                {
                    "idProperty": self.id_property,
                    "id": record_id,
                    "objectWriteTraceId": trace,
                    "properties": props,
                }
            )
            by_trace[trace] = owners[record_id]
        return inputs, by_trace, unaddressable

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        """Upsert `entries` (one group of `split`) in one request; those of customers without a CRM
        record key come back unmatched (not sent, parked)."""
        inputs, by_trace, unaddressable = self._inputs(entries)
        if not inputs:
            return SendResult(unmatched=unaddressable)
        if len(inputs) > MAX_INPUTS:  # callers go through split(); never send what HubSpot refuses
            raise ValueError(f"{len(inputs)} records in one request (HubSpot takes {MAX_INPUTS})")
        result = self._post(inputs, by_trace)
        result.unmatched.update(unaddressable)
        return result

    def _post(self, inputs: list[dict[str, Any]], by_trace: dict[str, list[int]]) -> SendResult:
        try:
            response = self.client.post(UPSERT_PATH, json={"inputs": inputs})
        except httpx.TimeoutException as exc:
            raise TransientCrmError(
                f"CRM {self.where} timed out ({type(exc).__name__})", outage=True
            ) from None
        except httpx.TransportError as exc:
            raise TransientCrmError(
                f"CRM {self.where} unreachable ({type(exc).__name__}: {exc})", outage=True
            ) from None
        status = response.status_code
        headers = response.headers
        interval = _seconds(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
        interval_s = interval / 1000 if interval is not None else None
        if status == 429:
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            raise RateLimited(
                f"CRM {self.where} rate limit (429): {_error_message(response)}",
                retry_after=retry_after if retry_after is not None else interval_s,
            )
        if status >= 500:
            raise TransientCrmError(
                f"CRM {self.where} error {status}: {_error_message(response)}",
                retry_after=retry_after_seconds(headers.get("Retry-After")),
                outage=status in OUTAGE,
            )
        if status in (401, 403):
            raise CrmError(
                f"CRM {self.where} refused the credentials ({status}): {_error_message(response)}",
                hint="check PERSONA_CRM__TOKEN and the app's crm.objects.contacts.write scope",
            )
        if status in REJECTS_BATCH:
            raise BatchRejected(f"CRM {self.where} rejected the batch ({status}): {_error_message(response)}")
        if 400 <= status < 500:  # 404, 405, ...: not the records' fault, nothing to split or dead-letter
            raise CrmError(
                f"CRM {self.where} answered {status} to {UPSERT_PATH}: {_error_message(response)}",
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
            raise TransientCrmError(f"CRM {self.where} answered an unexpected {status}")
        return result

    def close(self) -> None:
        self.client.close()

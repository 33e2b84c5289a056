"""Segment lists in HubSpot (Lists API v3): MANUAL contact lists found by name (created when absent),
memberships changed with `PUT /crm/v3/lists/{listId}/memberships/add-and-remove`. Contacts are found by
`crm.id_property` through `POST /crm/v3/objects/contacts/batch/read`; a customer whose contact HubSpot
does not have is dead-lettered with the reason; one with no key at all is parked as unmatched. Adding a member twice or removing a non-member changes
nothing in HubSpot, so a re-delivery is harmless; within one request the newest change per record wins.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
from serving.connectors.http import OUTAGE, _error_message, retry_after_seconds
from serving.outbox import OutboxEntry
from serving.record_keys import RecordKeys

LISTS = "/crm/v3/lists"
BATCH_READ = "/crm/v3/objects/contacts/batch/read"
MAX_RECORDS = 100  # batch read inputs per request


class HubSpotConnector(Connector):
    """What the HubSpot connectors beyond contact properties share: the client, error mapping (429 ->
    RateLimited with Retry-After; 5xx, time-out, refused -> TransientCrmError; `reject` statuses ->
    BatchRejected; any other answer -> CrmError, a configuration problem) and the contact lookup."""

    name = "hubspot"
    max_batch = MAX_RECORDS

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        id_property: str,
        resolver: RecordKeys,
        timeout: float = 10.0,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.where = mask_urls(base_url.rstrip("/"))
        self.id_property = id_property
        self.resolver = resolver
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout)
        )

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok: tuple[int, ...] = (200, 201),
        reject: tuple[int, ...] = (),
    ) -> httpx.Response:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise TransientCrmError(
                f"CRM {self.where} timed out ({type(exc).__name__})", outage=True
            ) from None
        except httpx.TransportError as exc:
            raise TransientCrmError(
                f"CRM {self.where} unreachable ({type(exc).__name__})", outage=True
            ) from None
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
            if wait is None and interval.isdigit():  # HubSpot's rolling limits name their window instead
                wait = int(interval) / 1000
            raise RateLimited(
                f"CRM {self.where} rate limit (429): {_error_message(response)}", retry_after=wait
            )
        if status >= 500:
            raise TransientCrmError(
                f"CRM {self.where} error {status}: {_error_message(response)}", outage=status in OUTAGE
            )
        if status in reject:
            raise BatchRejected(
                f"CRM {self.where} refused the request ({status}): {_error_message(response)}"
            )
        if status not in ok:
            raise CrmError(
                f"CRM {self.where} answered {status} to {method} {path}: {_error_message(response)}",
                hint="check crm.url and the app's scopes (crm.lists.write, crm.objects.contacts.write)",
            )
        return response

    def _contacts(self, entries: list[OutboxEntry]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """customer -> its keys (`crm.id_property` values), and key -> HubSpot record id for the keys
        HubSpot has (one batch read)."""
        keys = self.resolver.records_for({e.change.customer_id for e in entries})
        wanted = sorted({k for e in entries for k in keys.get(e.change.customer_id, [])})
        record_of: dict[str, str] = {}
        if wanted:
            body = {
                "idProperty": self.id_property,
                "properties": [self.id_property],
                "inputs": [{"id": k} for k in wanted],
            }
            for item in self._call("POST", BATCH_READ, body, ok=(200, 207)).json().get("results", []):
                record_of[str(item["properties"][self.id_property])] = str(item["id"])
        return keys, record_of

    def _records(self, entries: list[OutboxEntry], result: SendResult) -> dict[int, list[str]]:
        """outbox id -> the customer's HubSpot record ids. A customer without a key is unmatched (parked);
        one whose key HubSpot does not know is rejected (dead letter) with the reason."""
        keys, record_of = self._contacts(entries)
        out: dict[int, list[str]] = {}
        for entry in entries:
            own = keys.get(entry.change.customer_id, [])
            if not own:
                result.unmatched[entry.id] = no_record_reason(
                    entry.change.customer_id, self.resolver.record_key
                )
                continue
            records = [record_of[k] for k in own if k in record_of]
            if not records:
                result.rejected[entry.id] = (
                    f"no HubSpot contact for customer {entry.change.customer_id} ({self.id_property})"
                )
                continue
            out[entry.id] = records
        return out

    def close(self) -> None:
        self.client.close()


class HubSpotListsConnector(HubSpotConnector):
    name = "hubspot-lists"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.list_ids: dict[str, str] = {}

    def _list_id(self, name: str) -> str:
        if name not in self.list_ids:
            found = self._call(
                "GET", f"{LISTS}/object-type-id/0-1/name/{quote(name, safe='')}", ok=(200, 404)
            )
            if found.status_code == 404:
                found = self._call(
                    "POST", LISTS, {"name": name, "objectTypeId": "0-1", "processingType": "MANUAL"}
                )
            self.list_ids[name] = str(found.json()["list"]["listId"])
        return self.list_ids[name]

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        result = SendResult()
        records_of = self._records(entries, result)
        # per list and record, the newest change of this request
        plan: dict[str, dict[str, tuple[int, bool]]] = {}
        for entry in entries:
            for record in records_of.get(entry.id, []):
                held = plan.setdefault(entry.change.crm_field, {}).get(record)
                seq = entry.change.seq or 0
                if held is None or held[0] < seq:
                    plan[entry.change.crm_field][record] = (seq, entry.change.new_value is not None)
        for name, records in plan.items():
            list_id = self._list_id(name)
            body = {
                "recordIdsToAdd": sorted(r for r, (_, member) in records.items() if member),
                "recordIdsToRemove": sorted(r for r, (_, member) in records.items() if not member),
            }
            self._call("PUT", f"{LISTS}/{list_id}/memberships/add-and-remove", body)
        return result

"""A trigger's CRM task or note on the customer's contact record, for both kinds of CRM.

`Activity` is what a firing asks for (rendered by `serving.triggers`); the connectors deliver it:
- `HubSpotActivitiesConnector`: CRM v3 objects, `POST /crm/v3/objects/{tasks|notes}/batch/create`, at
  most 100 inputs, each associated with the customer's contact records (HubSpot-defined association
  types 204 task -> contact, 202 note -> contact). HubSpot has no idempotency key for creates, so each
  text carries the change id as a token (`persona-change <id>`), and an entry that was attempted before
  (its acknowledgement may have been lost) is first looked up with `POST /crm/v3/objects/{kind}/search`
  (`CONTAINS_TOKEN`): found, it is settled without creating a second one. A kill between the request
  and its acknowledgement with no failure recorded is the one window left (the lease re-delivers it
  with attempts 0); HubSpot search is also eventually consistent. 400: the batch is split to find the
  bad input (dead-lettered with HubSpot's reason).
- `SqlActivitiesConnector`: rows of `persona_crm_activities` in the SQL CRM, keyed by (change id,
  contact): a re-delivery inserts nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from serving.connectors.base import Connector, SendResult, TransientCrmError, no_record_reason
from serving.connectors.hubspot_lists import HubSpotConnector
from serving.outbox import OutboxEntry

KINDS = {"crm_task": "tasks", "crm_note": "notes"}  # trigger action -> HubSpot object type
ASSOCIATION_TYPE = {"tasks": 204, "notes": 202}  # HubSpot-defined, to a contact
SEARCH_GROUPS = 5  # filterGroups per search request (HubSpot's limit)
TOKEN_PREFIX = "persona-change"


@dataclass(frozen=True)
class Activity:
    """A task or note to create: texts already rendered, `due_at` for tasks."""

    kind: str  # crm_task | crm_note
    subject: str
    body: str
    priority: str = "MEDIUM"
    due_at: datetime | None = None


def marker(change_id: str) -> str:
    """The token each text carries, so a re-sent firing can be found (and not created twice)."""
    return f"[{TOKEN_PREFIX} {change_id}]"


def _millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubSpotActivitiesConnector(HubSpotConnector):
    """Creates a HubSpot task or note per firing (see module doc)."""

    name = "hubspot-activities"

    def __init__(self, base_url: str, *, render: Callable[[OutboxEntry], Activity], **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.render = render

    def _properties(self, entry: OutboxEntry, activity: Activity) -> dict[str, str]:
        text = f"{activity.body}\n{marker(entry.change.change_id or str(entry.id))}"
        if activity.kind == "crm_note":
            return {"hs_timestamp": _millis(entry.change.changed_at), "hs_note_body": text}
        return {
            "hs_timestamp": _millis(activity.due_at or entry.change.changed_at),
            "hs_task_subject": activity.subject,
            "hs_task_body": text,
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": activity.priority,
            "hs_task_type": "TODO",  # HubSpot's task type for a to-do (the others: CALL, EMAIL)
        }

    def _already_created(self, kind: str, entries: list[OutboxEntry]) -> set[int]:
        """Those of `entries` (attempted before) whose task or note HubSpot already holds."""
        prop = "hs_task_body" if kind == "tasks" else "hs_note_body"
        found: set[int] = set()
        for start in range(0, len(entries), SEARCH_GROUPS):
            chunk = entries[start : start + SEARCH_GROUPS]
            ids = {e.change.change_id or str(e.id): e.id for e in chunk}
            body = {
                "filterGroups": [
                    {"filters": [{"propertyName": prop, "operator": "CONTAINS_TOKEN", "value": cid}]}
                    for cid in ids
                ],
                "properties": [prop],
                "limit": 100,
            }
            for item in self._call("POST", f"/crm/v3/objects/{kind}/search", body).json().get("results", []):
                text = str(item.get("properties", {}).get(prop) or "")
                found |= {entry_id for cid, entry_id in ids.items() if marker(cid) in text}
        return found

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        result = SendResult()
        records_of = self._records(entries, result)
        ready = [e for e in entries if e.id in records_of]
        by_kind: dict[str, list[OutboxEntry]] = {}
        for entry in ready:
            by_kind.setdefault(KINDS[entry.change.crm_field], []).append(entry)
        for kind, own in by_kind.items():
            retried = [e for e in own if e.attempts > 0]
            done = self._already_created(kind, retried) if retried else set()
            result.duplicates += len(done)
            inputs = []
            for entry in own:
                if entry.id in done:
                    continue
                activity = self.render(entry)
                inputs.append(
                    {
                        "properties": self._properties(entry, activity),
                        "associations": [
                            {
                                "to": {"id": record},
                                "types": [
                                    {
                                        "associationCategory": "HUBSPOT_DEFINED",
                                        "associationTypeId": ASSOCIATION_TYPE[kind],
                                    }
                                ],
                            }
                            for record in records_of[entry.id]
                        ],
                        "objectWriteTraceId": entry.change.change_id or str(entry.id),
                    }
                )
            if inputs:
                self._call("POST", f"/crm/v3/objects/{kind}/batch/create", {"inputs": inputs}, reject=(400,))
        return result


_crm = sa.MetaData()
activities_table = sa.Table(
    "persona_crm_activities",
    _crm,
    sa.Column("change_id", sa.String(32), primary_key=True),
    sa.Column("contact_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # task | note
    sa.Column("trigger", sa.String(128), nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("priority", sa.String(8), nullable=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class SqlActivitiesConnector(Connector):
    """Tasks and notes as rows of the SQL CRM's `persona_crm_activities` (one per contact record)."""

    name = "sql-activities"
    max_batch = 1000

    def __init__(
        self, engine: sa.Engine, *, resolver: Any, render: Callable[[OutboxEntry], Activity]
    ) -> None:
        self.engine = engine
        self.resolver = resolver
        self.render = render
        _crm.create_all(engine, checkfirst=True)

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        contacts = self.resolver.records_for({e.change.customer_id for e in entries})
        result = SendResult()
        now = datetime.now(UTC)
        t = activities_table
        try:
            with self.engine.begin() as conn:
                for entry in entries:
                    own = contacts.get(entry.change.customer_id)
                    if not own:
                        result.unmatched[entry.id] = no_record_reason(
                            entry.change.customer_id, self.resolver.record_key
                        )
                        continue
                    change_id = entry.change.change_id or str(entry.id)
                    held = {
                        r[0]
                        for r in conn.execute(sa.select(t.c.contact_id).where(t.c.change_id == change_id))
                    }
                    if held:
                        result.duplicates += 1
                    activity = self.render(entry)
                    rows = [
                        {
                            "change_id": change_id,
                            "contact_id": contact,
                            "customer_id": entry.change.customer_id,
                            "kind": "task" if activity.kind == "crm_task" else "note",
                            "trigger": entry.change.tag,
                            "subject": activity.subject if activity.kind == "crm_task" else None,
                            "body": activity.body,
                            "priority": activity.priority if activity.kind == "crm_task" else None,
                            "due_at": activity.due_at,
                            "created_at": now,
                        }
                        for contact in own
                        if contact not in held
                    ]
                    if rows:
                        conn.execute(sa.insert(t), rows)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise TransientCrmError(f"CRM database unavailable: {exc.orig or exc}", outage=True) from None
        return result

    def close(self) -> None:
        self.engine.dispose()

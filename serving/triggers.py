"""Triggers: a tag change that starts work. Rules (`triggers.rules` in the config) are matched against
the changes a scoring run records: the change that fires is explicit (`tag`, `becomes`), the condition
on the customer (`where`) is a tag expression or mapping as segment sync's (`serving.conditions`); each
firing of each action is queued in the `trigger_outbox`, in the
same transaction as the tag change that fired it, and delivered by the same dispatcher as CRM tags (at
least once, back-off, circuit breaker, time-bounded retries, dead letters, `persona crm replay
--triggers`). Actions: `webhook` (a signed JSON POST), `crm_task` / `crm_note` (on the customer's CRM
contact records, `serving.connectors.activities`), `add_to_list` (a list membership through the HubSpot
lists contract, or the SQL CRM's lists). An outbox entry's `tag` is the rule, its `crm_field` the action.

A firing's idempotency key is (customer, rule, action, new value, producer and the change's time): a
re-run on the same data records no tag change and so fires nothing; a customer who leaves `high` and
comes back fires again. Each delivery carries the firing's `change_id`, so a receiver drops a
re-delivery (webhooks), the CRM keeps one task or note per change id (activities), and adding a list
member twice changes nothing (lists).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import ConfigError, CrmError
from serving.changes import TagChange
from serving.conditions import Condition, compile_where
from serving.connectors.base import Connector, SendResult, TransientCrmError
from serving.outbox import Outbox, OutboxEntry, trigger_outbox_table

MEMBER = "member"  # as serving.segments: a list membership's value

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from configs.sections.triggers import TriggerRule
    from configs.settings import Settings
    from serving.connectors.activities import Activity

SIGNATURE_HEADER = "X-Persona-Signature"
TIMESTAMP_HEADER = "X-Persona-Timestamp"
DELIVERY_HEADER = "X-Persona-Delivery"


def trigger_outbox(engine: Engine) -> Outbox:
    """The outbox of trigger actions in the state database (created if missing)."""
    outbox = Outbox(engine, table=trigger_outbox_table, supersede=False)
    outbox.create_schema()
    return outbox


def conditions_of(rules: list[TriggerRule], tag_types: Mapping[str, str] | None) -> dict[str, Condition]:
    """Each rule's `where` compiled (`serving.conditions`; rules without one are left out); a
    ConfigError naming `triggers.rules[<name>].where` when it does not hold against the catalog."""
    return {
        rule.name: compile_where(rule.where, tag_types=tag_types, key=f"triggers.rules[{rule.name}].where")
        for rule in rules
        if rule.where
    }


def check_trigger_rules(
    rules: list[TriggerRule],
    tag_types: Mapping[str, str],
    tag_values: Mapping[str, tuple[str, ...] | None] | None = None,
) -> None:
    """Every rule's `tag` is in the catalog (`tag_types`: tag -> type), its `becomes` is one of the
    tag's declared values where the catalog declares them (`tag_values`: a typo would never fire), and
    its `where` parses and type-checks (else a one-line ConfigError naming the key)."""
    for rule in rules:
        if rule.tag not in tag_types:
            raise ConfigError(
                f"triggers.rules[{rule.name}].tag: unknown tag {rule.tag!r} (see `persona tags list`)"
            )
        allowed = (tag_values or {}).get(rule.tag)
        unknown = [v for v in rule.becomes or () if allowed is not None and v not in allowed]
        if unknown:
            raise ConfigError(
                f"triggers.rules[{rule.name}].becomes: {unknown[0]!r} is not a value of tag {rule.tag!r} "
                f"(its values: {', '.join(allowed)})"
            )
    conditions_of(rules, tag_types)


def fire(
    rules: list[TriggerRule],
    changes: list[TagChange],
    tags: pd.DataFrame | None,
    *,
    tag_types: Mapping[str, str] | None = None,
) -> list[TagChange]:
    """The firings of `rules` for `changes`. The change that fires is explicit (`tag`, `becomes`); the
    condition on the customer (`where`) reads `tags` (customer_id + one column per tag, values after the
    run, as stored); a customer absent from it meets no `where`. `tag_types` (tag -> catalog type) is
    needed for rules whose `where` is an expression."""
    if not rules or not changes:
        return []
    conditions = conditions_of(rules, tag_types)
    rows: dict[str, Mapping[str, Any]] = {}
    meets: dict[str, set[str]] = {name: set() for name in conditions}
    if tags is not None and conditions:
        wanted = {change.customer_id for change in changes}
        current = tags[tags["customer_id"].astype(str).isin(wanted)].reset_index(drop=True)
        ids = current["customer_id"].astype(str)
        rows = {customer: row for customer, row in zip(ids, current.to_dict("records"), strict=True)}
        meets = {name: set(ids[c.select(current)]) for name, c in conditions.items()}
    out = []
    for change in changes:
        for rule in rules:
            if change.tag != rule.tag or (rule.becomes is not None and change.new_value not in rule.becomes):
                continue
            condition = conditions.get(rule.name)
            if condition is not None and change.customer_id not in meets[rule.name]:
                continue
            row = rows.get(change.customer_id, {})
            where = {t: _text(row.get(t)) for t in condition.tags} if condition is not None else {}
            out.extend(
                TagChange(
                    customer_id=change.customer_id,
                    tag=rule.name,
                    crm_field=action,
                    old_value=change.old_value,
                    new_value=change.new_value,
                    changed_at=change.changed_at,
                    produced_by=f"{change.produced_by}@{change.changed_at.isoformat()}",
                    inputs={"tag": change.tag, "where": where, "reasons": change.inputs},
                )
                for action in rule.actions
            )
    return out


def fire_in_run(
    conn: Connection,
    rules: list[TriggerRule],
    changes: list[TagChange],
    tags: pd.DataFrame,
    *,
    tag_types: Mapping[str, str],
    not_recomputed: Collection[str],
) -> list[TagChange]:
    """`fire` inside a refresh's transaction. A run evaluates every tag but records only those whose
    cadence is due; a `where` on a tag it did not record (`not_recomputed`) reads the value the tag
    store holds, i.e. what the CRM shows, not one the run computed and dropped."""
    read = {tag for condition in conditions_of(rules, tag_types).values() for tag in condition.tags}
    held = sorted(read & set(not_recomputed))
    if held and changes:
        tags = _with_stored(conn, tags, {change.customer_id for change in changes}, held)
    return fire(rules, changes, tags, tag_types=tag_types)


def _with_stored(conn: Connection, tags: pd.DataFrame, customers: set[str], held: list[str]) -> pd.DataFrame:
    """The rows of `customers` in `tags`, the columns `held` replaced by the tag store's current values."""
    import sqlalchemy as sa

    from serving.tag_store import tag_current

    rows = tags[tags["customer_id"].astype(str).isin(customers)].copy()
    t = tag_current
    stored: dict[tuple[str, str], str | None] = {}
    ids = sorted(customers)
    for start in range(0, len(ids), 500):
        query = sa.select(t.c.customer_id, t.c.tag, t.c.value).where(
            t.c.customer_id.in_(ids[start : start + 500]), t.c.tag.in_(held)
        )
        stored.update({(str(c), str(tag)): value for c, tag, value in conn.execute(query)})
    keys = rows["customer_id"].astype(str)
    for tag in held:
        rows[tag] = [stored.get((customer, tag)) for customer in keys]
    return rows


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)


def enqueue_firings(conn: Connection, outbox: Outbox, firings: list[TagChange]) -> int:
    """Queue `firings` in the caller's transaction (the one recording the tag changes)."""
    return outbox.enqueue(conn, firings)


def payload(entry: OutboxEntry) -> dict[str, Any]:
    """The JSON a webhook receives: the customer's business key, the change, the reasons."""
    change = entry.change
    return {
        "trigger": change.tag,
        "change_id": change.change_id,
        "customer_id": change.customer_id,
        "change": {
            "tag": change.inputs.get("tag"),
            "old_value": change.old_value,
            "new_value": change.new_value,
            "changed_at": change.changed_at.isoformat(),
            "produced_by": change.produced_by.rsplit("@", 1)[0],
        },
        "where": change.inputs.get("where", {}),
        "reasons": change.inputs.get("reasons", {}),
    }


def render(rule: TriggerRule, entry: OutboxEntry) -> Activity:
    """The task or note a firing of `rule` asks for, its texts filled in from the change."""
    from datetime import timedelta

    from serving.connectors.activities import Activity

    change = entry.change
    fields = {
        "trigger": rule.name,
        "customer_id": change.customer_id,
        "tag": change.inputs.get("tag", ""),
        "old_value": change.old_value if change.old_value is not None else "(unset)",
        "new_value": change.new_value if change.new_value is not None else "(unset)",
        "changed_at": change.changed_at.isoformat(),
    }
    if change.crm_field == "crm_note" and rule.crm_note is not None:
        return Activity(kind="crm_note", subject="", body=rule.crm_note.body.format(**fields))
    task = rule.crm_task
    if change.crm_field != "crm_task" or task is None:
        raise KeyError(f"trigger {rule.name} has no {change.crm_field} action")
    return Activity(
        kind="crm_task",
        subject=task.subject.format(**fields),
        body=task.body.format(**fields),
        priority=task.priority,
        due_at=change.changed_at + timedelta(days=task.due_in_days),
    )


def sign(secret: str, *, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + body): what receivers recompute."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, *, timestamp: str, body: bytes, signature: str) -> bool:
    """For receivers (and tests): a constant-time check of `signature`."""
    return hmac.compare_digest(sign(secret, timestamp=timestamp, body=body), signature)


class WebhookConnector(Connector):
    """Delivers trigger firings as signed JSON POSTs, one request per firing, to each rule's URL.

    2xx: delivered; 429: paused (Retry-After); 5xx, time-out, refused: retried with back-off (the
    dispatcher's breaker opens on outages); other 4xx: dead-lettered with the receiver's answer."""

    name = "webhook"
    max_batch = 1

    def __init__(self, rules: list[TriggerRule], *, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        import httpx

        self.rules = {r.name: r for r in rules}
        self.clock = clock
        self.client = httpx.Client()

    def _secret(self, rule: TriggerRule) -> str:
        secret = os.environ.get(rule.webhook.secret_env, "")
        if not secret:
            raise CrmError(
                f"triggers.rules[{rule.name}].webhook.secret_env: environment variable "
                f"{rule.webhook.secret_env} is not set (the webhook secret comes from the environment only)"
            )
        return secret

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        import httpx

        from serving.connectors.base import RateLimited

        result = SendResult()
        for entry in entries:
            rule = self.rules.get(entry.change.tag)
            if rule is None or rule.webhook is None:
                result.rejected[entry.id] = (
                    f"no webhook of trigger rule {entry.change.tag!r} in the config any more"
                )
                continue
            body = json.dumps(payload(entry), sort_keys=True, default=str).encode()
            stamp = str(int(self.clock()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: sign(self._secret(rule), timestamp=stamp, body=body),
                DELIVERY_HEADER: entry.change.change_id or str(entry.id),
            }
            try:
                response = self.client.post(
                    rule.webhook.url, content=body, headers=headers, timeout=rule.webhook.timeout_seconds
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise TransientCrmError(f"webhook {rule.name}: {type(exc).__name__}", outage=True) from None
            if response.status_code == 429:
                after = response.headers.get("Retry-After")
                raise RateLimited(
                    f"webhook {rule.name}: 429",
                    retry_after=float(after) if after and after.isdigit() else None,
                )
            if response.status_code >= 500:
                raise TransientCrmError(
                    f"webhook {rule.name}: HTTP {response.status_code}",
                    outage=response.status_code in (502, 503, 504),
                )
            if response.status_code >= 400:
                result.rejected[entry.id] = (
                    f"webhook {rule.name}: HTTP {response.status_code} {response.text[:200]}"
                )
        return result

    def close(self) -> None:
        self.client.close()


class TriggerConnector(Connector):
    """Routes each trigger action to its connector: one request carries one action's entries."""

    name = "triggers"

    def __init__(self, rules: list[TriggerRule], connectors: dict[str, Connector]) -> None:
        self.rules = {r.name: r for r in rules}
        self.connectors = connectors
        self.max_batch = max((c.max_batch for c in connectors.values()), default=1)

    def split(self, entries: list[OutboxEntry]) -> list[list[OutboxEntry]]:
        by_action: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_action.setdefault(entry.change.crm_field, []).append(entry)
        groups: list[list[OutboxEntry]] = []
        for action, own in by_action.items():
            connector = self.connectors.get(action)
            groups += connector.split(own) if connector is not None else [own]
        return groups

    def with_record(self, customer_ids: set[str]) -> set[str]:
        # a webhook needs no CRM record; parked entries are of the CRM actions, which share the resolver
        found: set[str] = set()
        for action, connector in self.connectors.items():
            if action != "webhook":
                found |= connector.with_record(customer_ids)
        return found

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        action = entries[0].change.crm_field
        connector = self.connectors.get(action)
        if connector is None:
            return SendResult(
                rejected={
                    e.id: f"no {action} action configured for trigger {e.change.tag!r}" for e in entries
                }
            )
        if action != "add_to_list":
            return connector.send(entries)
        # a list membership: the list connectors read the list from crm_field, a member from new_value
        result = SendResult()
        ready = []
        for entry in entries:
            rule = self.rules.get(entry.change.tag)
            if rule is None or rule.add_to_list is None:
                result.rejected[entry.id] = (
                    f"no add_to_list of trigger rule {entry.change.tag!r} in the config any more"
                )
                continue
            change = replace(entry.change, crm_field=rule.add_to_list.name, new_value=MEMBER)
            ready.append(replace(entry, change=change))
        if ready:
            sent = connector.send(ready)
            result.rejected.update(sent.rejected)
            result.unmatched.update(sent.unmatched)
            result.duplicates += sent.duplicates
            result.pause_for = sent.pause_for
        return result

    def close(self) -> None:
        for connector in self.connectors.values():
            connector.close()


def make_trigger_connector(settings: Settings) -> TriggerConnector:
    """The connectors the configured actions need, on the configured CRM (`crm.connector`)."""
    import sqlalchemy as sa

    from serving.connectors.activities import HubSpotActivitiesConnector, SqlActivitiesConnector
    from serving.record_keys import RecordKeys
    from serving.segments import SqlListsConnector

    rules = settings.triggers.rules
    wanted = {action for rule in rules for action in rule.actions}
    crm = settings.crm
    resolver = RecordKeys(settings.path("{data_dir}/clean/identity_map.parquet"), record_key=crm.record_key)
    by_name = {r.name: r for r in rules}

    def rendered(entry: OutboxEntry) -> Activity:
        return render(by_name[entry.change.tag], entry)

    connectors: dict[str, Connector] = {}
    if "webhook" in wanted:
        connectors["webhook"] = WebhookConnector(rules)
    crm_actions = wanted & {"crm_task", "crm_note", "add_to_list"}
    if crm_actions and crm.connector == "http":
        from serving.connectors.hubspot_lists import HubSpotListsConnector

        http = {
            "token": crm.token.get_secret_value() if crm.token else None,
            "id_property": crm.id_property,
            "resolver": resolver,
            "timeout": crm.timeout_seconds,
        }
        activities = HubSpotActivitiesConnector(settings.url(crm.url), render=rendered, **http)
        for action in crm_actions - {"add_to_list"}:
            connectors[action] = activities
        if "add_to_list" in crm_actions:
            connectors["add_to_list"] = HubSpotListsConnector(settings.url(crm.url), **http)
    elif crm_actions and crm.connector == "sql":
        engine = sa.create_engine(settings.url(crm.url))
        sql_activities = SqlActivitiesConnector(engine, resolver=resolver, render=rendered)
        for action in crm_actions - {"add_to_list"}:
            connectors[action] = sql_activities
        if "add_to_list" in crm_actions:
            connectors["add_to_list"] = SqlListsConnector(engine, resolver=resolver)
    elif crm_actions:
        raise CrmError(
            f"triggers: no connector for crm_task / crm_note / add_to_list on crm.connector {crm.connector!r}"
        )
    return TriggerConnector(rules, connectors)


def build_trigger_dispatcher(settings: Settings, *, engine: Engine, connector: Connector | None = None):  # type: ignore[no-untyped-def]
    """A dispatcher for the trigger outbox, with the CRM's delivery settings."""
    from serving.dispatcher import Dispatcher

    crm = settings.crm
    return Dispatcher(
        trigger_outbox(engine),
        connector if connector is not None else make_trigger_connector(settings),
        batch_size=crm.batch_size,
        give_up_after=crm.give_up_after,
        base_delay=crm.base_delay_seconds,
        max_delay=crm.max_delay_seconds,
        lease_seconds=crm.lease_seconds,
        poll_seconds=crm.poll_seconds,
    )

"""Triggers: a tag change that starts work. Rules (`triggers.rules` in the config) are matched against
the changes a scoring run records; each firing is queued in the `trigger_outbox`, in the same
transaction as the tag change that fired it, and delivered by the same dispatcher as CRM tags (at least
once, back-off, circuit breaker, time-bounded retries, dead letters, `persona crm replay --triggers`).

A firing's idempotency key is (customer, rule, new value, producer and the change's time): a re-run on
the same data records no tag change and so fires nothing; a customer who leaves `high` and comes back
fires again. Each delivery carries the firing's `change_id`, so a receiver drops a re-delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import CrmError
from serving.changes import TagChange
from serving.connectors.base import Connector, SendResult, TransientCrmError
from serving.outbox import Outbox, OutboxEntry, trigger_outbox_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from configs.sections.triggers import TriggerRule
    from configs.settings import Settings

SIGNATURE_HEADER = "X-Persona-Signature"
TIMESTAMP_HEADER = "X-Persona-Timestamp"
DELIVERY_HEADER = "X-Persona-Delivery"


def trigger_outbox(engine: Engine) -> Outbox:
    """The outbox of trigger actions in the state database (created if missing)."""
    outbox = Outbox(engine, table=trigger_outbox_table, supersede=False)
    outbox.create_schema()
    return outbox


def fire(rules: list[TriggerRule], changes: list[TagChange], tags: pd.DataFrame | None) -> list[TagChange]:
    """The firings of `rules` for `changes`. `tags` (customer_id + one column per tag, values after the
    run) answers each rule's `where`; a customer absent from it matches no `where`."""
    if not rules or not changes:
        return []
    current: dict[str, Mapping[str, Any]] = {}
    if tags is not None and any(r.where for r in rules):
        wanted = {change.customer_id for change in changes}
        rows = tags[tags["customer_id"].astype(str).isin(wanted)]
        current = {str(row["customer_id"]): row for row in rows.to_dict("records")}
    out = []
    for change in changes:
        for rule in rules:
            if change.tag != rule.tag or (rule.becomes is not None and change.new_value not in rule.becomes):
                continue
            row = current.get(change.customer_id)
            if rule.where and (
                row is None or not all(_matches(row.get(k), v) for k, v in rule.where.items())
            ):
                continue
            where = {k: _text(row.get(k)) for k in rule.where} if row is not None else {}
            out.append(
                TagChange(
                    customer_id=change.customer_id,
                    tag=rule.name,
                    crm_field="webhook",
                    old_value=change.old_value,
                    new_value=change.new_value,
                    changed_at=change.changed_at,
                    produced_by=f"{change.produced_by}@{change.changed_at.isoformat()}",
                    inputs={"tag": change.tag, "where": where, "reasons": change.inputs},
                )
            )
    return out


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)


def _matches(value: Any, wanted: str | list[str]) -> bool:
    text = _text(value)
    return text in wanted if isinstance(wanted, list) else text == wanted


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
            if rule is None:
                result.rejected[entry.id] = f"no trigger rule {entry.change.tag!r} in the config any more"
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


def build_trigger_dispatcher(settings: Settings, *, engine: Engine):  # type: ignore[no-untyped-def]
    """A dispatcher for the trigger outbox, with the CRM's delivery settings."""
    from serving.dispatcher import Dispatcher

    crm = settings.crm
    return Dispatcher(
        trigger_outbox(engine),
        WebhookConnector(settings.triggers.rules),
        batch_size=crm.batch_size,
        give_up_after=crm.give_up_after,
        base_delay=crm.base_delay_seconds,
        max_delay=crm.max_delay_seconds,
        lease_seconds=crm.lease_seconds,
        poll_seconds=crm.poll_seconds,
    )

"""What every CRM connector promises the dispatcher and the errors it may raise. Which CRM record a
customer's tags go to is `serving.record_keys.RecordKeys.records_for`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from core.errors import CrmError
from serving.outbox import OutboxEntry


class TransientCrmError(CrmError):
    """The CRM could not take the batch now (down, 5xx, time-out): retry the whole batch later.
    `retry_after` (seconds) is the CRM's own hint, when it gave one. `outage` says the CRM as a whole
    is unreachable (connection refused, time-out, 502/503/504), not just this request: the dispatcher's
    circuit breaker then stops sending anything until a probe gets through."""

    def __init__(self, message: str, *, retry_after: float | None = None, outage: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.outage = outage


class RateLimited(TransientCrmError):
    """429: the CRM asks us to slow down. Not the records' fault, so it spends no attempt."""


class BatchRejected(CrmError):
    """The CRM refused the request as a whole (e.g. 400) without saying which record was bad: the
    dispatcher splits the batch to isolate the bad record."""


@dataclass
class SendResult:
    """Outcome of one `Connector.send`: entries not named in `rejected` were applied (or had already
    been applied). `pause_for` asks the dispatcher to wait before its next request (rate-limit headers)."""

    rejected: dict[int, str] = field(default_factory=dict)  # outbox id -> reason (permanent)
    # outbox id -> reason: the customer has no CRM record key yet (parked as `unmatched`, not dead)
    unmatched: dict[int, str] = field(default_factory=dict)
    pause_for: float | None = None
    duplicates: int = 0  # entries whose idempotency key the CRM had already applied


class Connector(ABC):
    """Delivers outbox entries to one CRM. Must be idempotent by `TagChange.idempotency_key`:
    the dispatcher delivers at least once, so a re-sent key must not be applied twice."""

    name: str = "connector"
    max_batch: int = 1000  # most entries one `send` may carry

    def split(self, entries: list[OutboxEntry]) -> list[list[OutboxEntry]]:
        """`entries` cut into the groups one request each carries. The dispatcher sends them one by
        one and records each acknowledgement before the next request, so a failed request is the only
        one retried."""
        step = max(1, self.max_batch)
        return [entries[i : i + step] for i in range(0, len(entries), step)]

    @abstractmethod
    def send(self, entries: list[OutboxEntry]) -> SendResult:
        """Apply `entries` (one group of `split`) in one request; raise TransientCrmError / RateLimited /
        BatchRejected when nothing was settled, or return per-entry rejections."""

    def close(self) -> None:
        """Release connections (default: nothing to release)."""
        return None

    def with_record(self, customer_ids: set[str]) -> set[str]:
        """Those of `customer_ids` the CRM can be addressed for now (default: all; connectors that look
        records up by key answer from their resolver)."""
        resolver = getattr(self, "resolver", None)
        if resolver is None:
            return set(customer_ids)
        return {c for c, records in resolver.records_for(customer_ids).items() if records}


def no_record_reason(customer_id: str, record_key: str) -> str:
    """Why an entry cannot be sent yet: its customer has no key the CRM knows (the entry is parked as
    `unmatched` until a later ingest gives the customer one)."""
    other = "" if record_key == "contacts" else f" and no {record_key} key (crm.record_key)"
    return f"no CRM record for customer {customer_id}: no CRM contact id{other}"

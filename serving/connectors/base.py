"""What every CRM connector promises the dispatcher, the errors it may raise, and the identity lookup
from Persona's customer_id to the CRM's contact ids."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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


class ContactResolver:
    """Maps Persona customer ids to CRM contact ids through the identity map
    (`clean/identity_map.parquet`, rows with source == "contacts").

    Without an identity map (a CRM keyed by Persona's own customer_id) every customer maps to itself.
    """

    def __init__(self, identity_map: Path | None) -> None:
        self.path = identity_map
        self._contacts: dict[str, list[str]] | None = None
        self._loaded_mtime: float | None = None

    @property
    def has_map(self) -> bool:
        return self.path is not None and self.path.is_file()

    def _load(self) -> dict[str, list[str]]:
        mtime = self.path.stat().st_mtime if self.path is not None and self.path.is_file() else None
        if self._contacts is None or mtime != self._loaded_mtime:  # re-read after a new `persona ingest`
            self._loaded_mtime = mtime
            import pandas as pd

            contacts: dict[str, list[str]] = {}
            if self.has_map:
                assert self.path is not None
                try:
                    frame = pd.read_parquet(self.path, columns=["source", "source_record_id", "customer_id"])
                except Exception as exc:
                    raise CrmError(
                        f"{self.path}: cannot read the identity map ({type(exc).__name__}: {exc})",
                        hint="run `persona ingest` again to rebuild it",
                    ) from None
                frame = frame[frame["source"] == "contacts"]
                for customer_id, group in frame.groupby("customer_id", sort=False):
                    contacts[str(customer_id)] = sorted(str(v) for v in group["source_record_id"])
            self._contacts = contacts
        return self._contacts

    def contacts_for(self, customer_ids: Iterable[str]) -> dict[str, list[str]]:
        """customer_id -> its CRM contact ids; [] when mapped customers have no contact record,
        [customer_id] when there is no identity map at all."""
        if not self.has_map:
            return {c: [c] for c in customer_ids}
        contacts = self._load()
        return {c: contacts.get(c, []) for c in customer_ids}

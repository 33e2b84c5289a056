"""Consent withdrawal and erasure carried out everywhere Persona keeps or sends something.

- `withdraw(settings, key)`: `persona consent withdraw ID`: the customer goes on the consent list of
  the state database (`features/consent.py`), then `enforce`.
- `enforce(settings)`: for every listed customer not dealt with yet (a CLI withdrawal, or the CRM
  source's `consent_profiling = N` found by `persona ingest`): delete their online rows (Feast), drop
  their rows from the feature tables (so no materialization brings them back) and from the
  recommender's purchase histories (what the served recommender scores from), and queue the clearing
  of every Persona field they hold in the CRM through the outbox (tag store + outbox in one
  transaction: the same sequences, retries and dead letters as any tag change).
- `forget(settings, key)`: the right to be forgotten: withdraw and enforce, then erase the derived
  data: clean orders/events/leads rows, current tags, tag history, the values and inputs kept in the
  outbox, and write an audit record without personal data.
- `ConsentWatcher`: the running service polls the list every `serving.consent_poll_seconds` and swaps
  its set of withdrawn ids when it changes: a withdrawal answers `consent_withdrawn` within seconds.
"""

from __future__ import annotations

import getpass
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from configs.settings import Settings
from core.errors import ValidationFailed
from core.statedb import make_state_engine
from features import consent

log = logging.getLogger(__name__)

WITHDRAWN_BY = "consent:withdrawn"  # `produced_by` of the clearing changes (tag history, outbox, CRM)


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a container: still say where it came from
        return "cli"


@dataclass
class EnforceReport:
    customers: int = 0
    online_rows_deleted: int = 0
    feature_rows_deleted: int = 0
    history_rows_deleted: int = 0  # the recommender's purchase histories
    crm_fields_cleared: int = 0  # clearing changes queued in the outbox
    notes: list[str] = field(default_factory=list)


@dataclass
class ForgetReport:
    customer_id: str
    subject_hash: str
    erased: dict[str, int]


def _engine(settings: Settings) -> sa.Engine:
    engine = make_state_engine(settings.url(settings.state_url))
    consent.create_schema(engine)
    return engine


def resolve_customer(settings: Settings, key: str) -> str:
    """The Persona customer id of `key`: a customer id itself, or a business key the identity map
    knows (the CRM contact id first, then the orders' customer number, then a lead id: the same lookup
    as `/v1/score`). One-line error when neither."""
    from features.ingest import load_clean
    from serving.record_keys import RecordKeys

    key = key.strip()
    customers = load_clean(settings, "customers")
    assert customers is not None
    if key in set(customers["customer_id"].astype(str)):
        return key
    keys = RecordKeys(
        settings.path("{data_dir}/clean/identity_map.parquet"), record_key=settings.crm.record_key
    )
    found = keys.customer_for([key]) if keys.has_map else {}
    if key in found:
        return found[key]
    raise ValidationFailed(
        f"no customer with id {key!r}: neither a Persona customer id (P + 12 hex) nor a business key "
        "(CRM contact id, customer number, lead id) in clean/identity_map.parquet",
        hint="run `persona ingest` if the record is new",
    )


def withdraw(settings: Settings, key: str, *, actor: str | None = None) -> tuple[str, EnforceReport]:
    """`persona consent withdraw KEY`: list the customer (outlives re-ingest) and enforce at once."""
    customer_id = resolve_customer(settings, key)
    engine = _engine(settings)
    actor = actor or default_actor()
    with engine.begin() as conn:
        consent.withdraw(conn, [customer_id], source=consent.CLI, actor=actor)
        consent.record_audit(
            conn,
            customer_id=customer_id,
            salt=settings.identity.salt.get_secret_value(),
            action="withdraw",
            actor=actor,
            erased={},
        )
    return customer_id, enforce(settings, customer_ids=[customer_id])


def enforce(settings: Settings, *, customer_ids: list[str] | None = None) -> EnforceReport:
    """Delete online rows and feature rows of listed customers and queue the clearing of their CRM
    fields (default: every listed customer not enforced yet). Safe to repeat."""
    from features.erasure import erase_feature_rows, erase_history_rows

    engine = _engine(settings)
    ids = sorted(set(customer_ids)) if customer_ids is not None else consent.unenforced(engine)
    report = EnforceReport(customers=len(ids))
    if not ids:
        return report
    report.online_rows_deleted = _delete_online(settings, ids, report)
    report.feature_rows_deleted = sum(erase_feature_rows(settings, ids).values())
    report.history_rows_deleted = erase_history_rows(settings, ids)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        changes = _clearing_changes(settings, engine, conn, ids, now)
        if changes:
            from serving.outbox import Outbox

            report.crm_fields_cleared = Outbox(engine).enqueue(conn, changes)
        consent.mark_enforced(conn, ids, at=now)
    return report


def _delete_online(settings: Settings, ids: list[str], report: EnforceReport) -> int:
    from features.feast_io import delete_online, get_store

    registry = settings.feast.registry
    if "://" not in registry and not settings.path(registry).is_file():
        report.notes.append("no Feast registry yet (persona features apply): no online rows to delete")
        return 0
    return delete_online(get_store(settings), ids)


def _clearing_changes(
    settings: Settings, engine: sa.Engine, conn: sa.Connection, ids: list[str], now: datetime
) -> list[Any]:
    """Tag changes to empty for every tag the customers hold (applied to the tag store in `conn`)."""
    from serving.outbox import Outbox
    from serving.tag_store import TagStore, tag_current

    TagStore(engine).create_schema()
    Outbox(engine).create_schema()
    held: set[str] = set()
    for start in range(0, len(ids), 500):
        held.update(
            r[0]
            for r in conn.execute(
                sa.select(tag_current.c.tag)
                .where(tag_current.c.customer_id.in_(ids[start : start + 500]))
                .distinct()
            )
        )
    if not held:
        return []
    from artifacts.catalog import load_catalog

    crm_fields = load_catalog(settings).crm_fields
    tags = sorted(held)
    frame = pd.DataFrame({"customer_id": ids, **{t: [None] * len(ids) for t in tags}}, dtype=object)
    store = TagStore(engine, crm_fields=crm_fields, tag_inputs={t: [] for t in tags})
    return store.apply(conn, tags=frame, produced_by=dict.fromkeys(tags, WITHDRAWN_BY), inputs=None, at=now)


def forget(settings: Settings, key: str, *, actor: str | None = None) -> ForgetReport:
    """`persona forget KEY`: withdraw, clear the CRM fields, erase every derived row, audit."""
    from features.erasure import erase_clean_rows, erase_staged_rows
    from serving.outbox import PENDING, UNMATCHED, Outbox
    from serving.tag_store import TagStore, tag_current, tag_history

    customer_id = resolve_customer(settings, key)
    engine = _engine(settings)
    actor = actor or default_actor()
    with engine.begin() as conn:
        consent.withdraw(conn, [customer_id], source=consent.FORGET, actor=actor)
    enforced = enforce(settings, customer_ids=[customer_id])
    erased: dict[str, int] = {
        "online_rows": enforced.online_rows_deleted,
        "feature_rows": enforced.feature_rows_deleted,
        "recommend_history_rows": enforced.history_rows_deleted,
        "crm_fields_cleared": enforced.crm_fields_cleared,
    }
    erased.update({f"clean_{k}_rows": v for k, v in erase_clean_rows(settings, [customer_id]).items()})
    erased["staged_source_rows"] = erase_staged_rows(settings)
    TagStore(engine).create_schema()
    outbox = Outbox(engine)
    outbox.create_schema()
    o = outbox.table
    with engine.begin() as conn:
        erased["current_tags"] = conn.execute(
            sa.delete(tag_current).where(tag_current.c.customer_id == customer_id)
        ).rowcount
        erased["tag_history_rows"] = conn.execute(
            sa.delete(tag_history).where(tag_history.c.customer_id == customer_id)
        ).rowcount
        mine = o.c.customer_id == customer_id
        # values not yet sent will never be: the clearing queued above supersedes them
        conn.execute(
            sa.update(o)
            .where(mine, o.c.status.in_((PENDING, UNMATCHED)), o.c.produced_by != WITHDRAWN_BY)
            .values(status="superseded", lease_owner=None, lease_expires_at=None)
        )
        # what stays of the outbox is delivery bookkeeping: no value, no input, no old value
        erased["outbox_rows_scrubbed"] = conn.execute(
            sa.update(o)
            .where(mine, o.c.produced_by != WITHDRAWN_BY)
            .values(
                new_value=None,
                old_value=None,
                inputs={},
                last_error=None,
                idempotency_key=sa.literal("erased:") + sa.cast(o.c.id, sa.String),
            )
        ).rowcount
        conn.execute(
            sa.update(o).where(mine, o.c.produced_by == WITHDRAWN_BY).values(old_value=None, inputs={})
        )
        digest = consent.record_audit(
            conn,
            customer_id=customer_id,
            salt=settings.identity.salt.get_secret_value(),
            action="forget",
            actor=actor,
            erased=erased,
        )
    return ForgetReport(customer_id=customer_id, subject_hash=digest, erased=erased)


class ConsentWatcher:
    """Keeps a running service's set of withdrawn ids current: polls the consent list's fingerprint
    (and the clean customers file) every `poll_seconds`, reloads on change, hands the new set over."""

    def __init__(
        self, settings: Settings, *, on_change: Callable[[frozenset[str]], None], poll_seconds: float
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        self.poll_seconds = poll_seconds
        self._engine = make_state_engine(settings.url(settings.state_url))
        self._seen: Any = None
        self.current: frozenset[str] | None = None

    def _fingerprint(self) -> Any:
        customers = self.settings.path("{data_dir}/clean/customers.parquet")
        mtime = customers.stat().st_mtime_ns if customers.is_file() else None
        return consent.version(self._engine), mtime

    def check(self) -> bool:
        """Reload when the list changed; True if a new set was handed over."""
        from features.ingest import withdrawn_customer_ids

        consent.create_schema(self._engine)
        seen = self._fingerprint()
        if seen == self._seen:
            return False
        try:
            ids = frozenset(withdrawn_customer_ids(self.settings))
        except Exception as exc:  # no clean data yet: only the list counts
            log.debug("consent: clean customers unreadable (%s): using the consent list only", exc)
            ids = frozenset(consent.withdrawn_ids(self._engine))
        self._seen = seen
        if ids != self.current:
            log.info("consent list: %d withdrawn customer(s)", len(ids))
            self.current = ids
            self.on_change(ids)
            return True
        return False

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check()
            except Exception as exc:  # the state DB may be briefly locked or down: try again
                log.warning("consent list not readable: %s", exc)
            stop.wait(self.poll_seconds)

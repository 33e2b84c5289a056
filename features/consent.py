"""The consent list: customers who must not be profiled, kept in Persona's state database.

`consent_withdrawals` holds one row per withdrawn customer, whatever said so: the CRM source
(`consent_profiling = N`, synced by every `persona ingest`), `persona consent withdraw` (`cli`) or
`persona forget` (`forget`). Ingest honours the rows of `cli` and `forget` (they outlive any re-ingest:
the CRM saying Y again does not undo them) and rewrites the `crm` rows from the source, so a consent the
CRM gives back is given back here too. The scoring service polls `version()` every few seconds and
reloads the ids when it changes, so a withdrawal takes effect without a restart. `enforced_at` is set
once the customer's online rows are deleted and the clearing of their CRM fields is queued
(`serving/consent.py`).

`erasure_audit` records each withdrawal and erasure without personal data: a salted hash of the id
(`subject_hash`), the time, the actor and counts of what was erased.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

CRM, CLI, FORGET = "crm", "cli", "forget"
SOURCES = (CRM, CLI, FORGET)
_CHUNK = 500

metadata = sa.MetaData()
withdrawals = sa.Table(
    "consent_withdrawals",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(16), nullable=False),  # crm | cli | forget
    sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    # when the online rows were deleted and the CRM clearing queued; NULL = still to do
    sa.Column("enforced_at", sa.DateTime(timezone=True), nullable=True),
)
audit = sa.Table(
    "erasure_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject_hash", sa.String(64), nullable=False),  # salted hash: no customer id, no PII
    sa.Column("action", sa.String(16), nullable=False),  # withdraw | forget
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("erased", sa.Text, nullable=False),  # JSON object: what -> how many rows
    sa.Index("ix_erasure_audit_subject", "subject_hash"),
)


@dataclass(frozen=True)
class AuditRecord:
    subject_hash: str
    action: str
    at: datetime
    actor: str
    erased: dict[str, int]


def subject_hash(customer_id: str, *, salt: str) -> str:
    """SHA-256 of the salt and the id: the audit can confirm "was X erased?" given X, and reveals nothing
    without it."""
    return hashlib.sha256(f"{salt}\x1faudit\x1f{customer_id}".encode()).hexdigest()


def create_schema(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def version(engine: Engine) -> tuple[int, Any]:
    """A cheap fingerprint of the list (row count, latest change): the service reloads when it moves."""
    t = withdrawals
    with engine.connect() as conn:
        count, latest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(t.c.withdrawn_at)).select_from(t)
        ).one()
    return int(count), latest


def withdrawn_ids(engine: Engine, *, sources: Iterable[str] = SOURCES) -> set[str]:
    """Ids on the list (optionally only those of some sources)."""
    t = withdrawals
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.customer_id).where(t.c.source.in_(list(sources)))).all()
    return {r[0] for r in rows}


def withdraw(
    conn: Connection, customer_ids: Iterable[str], *, source: str, actor: str, at: datetime | None = None
) -> list[str]:
    """Put `customer_ids` on the list in the caller's transaction; returns the ids newly added. An id
    already listed keeps its row, except that `cli`/`forget` take over a `crm` row (they outlive ingest)."""
    if source not in SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    t = withdrawals
    when = at or datetime.now(UTC)
    ids = sorted(set(customer_ids))
    listed: dict[str, str] = {}
    for chunk in _chunks(ids):
        listed.update(
            conn.execute(sa.select(t.c.customer_id, t.c.source).where(t.c.customer_id.in_(chunk))).all()
        )
    new = [i for i in ids if i not in listed]
    if new:
        conn.execute(
            sa.insert(t),
            [
                {
                    "customer_id": i,
                    "source": source,
                    "withdrawn_at": when,
                    "actor": actor,
                    "enforced_at": None,
                }
                for i in new
            ],
        )
    if source != CRM:
        upgrade = [i for i, s in listed.items() if s == CRM or (source == FORGET and s != FORGET)]
        for chunk in _chunks(upgrade):
            conn.execute(sa.update(t).where(t.c.customer_id.in_(chunk)).values(source=source, actor=actor))
    return new


def sync_from_crm(engine: Engine, withdrawn: Iterable[str], *, at: datetime | None = None) -> tuple[int, int]:
    """Make the `crm` rows equal the CRM's current withdrawals (after ingest): returns (added, removed).
    A customer the CRM lists as consenting again leaves the list unless `cli`/`forget` listed them."""
    create_schema(engine)
    t = withdrawals
    wanted = set(withdrawn)
    with engine.begin() as conn:
        held = {r[0] for r in conn.execute(sa.select(t.c.customer_id).where(t.c.source == CRM)).all()}
        gone = sorted(held - wanted)
        for chunk in _chunks(gone):
            conn.execute(sa.delete(t).where(t.c.source == CRM, t.c.customer_id.in_(chunk)))
        added = withdraw(conn, wanted - held, source=CRM, actor="crm source (persona ingest)", at=at)
    return len(added), len(gone)


def unenforced(engine: Engine) -> list[str]:
    """Listed customers whose online rows and CRM fields have not been dealt with yet."""
    t = withdrawals
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.customer_id).where(t.c.enforced_at.is_(None)).order_by(t.c.customer_id)
        ).all()
    return [r[0] for r in rows]


def mark_enforced(conn: Connection, customer_ids: Iterable[str], *, at: datetime | None = None) -> None:
    t = withdrawals
    when = at or datetime.now(UTC)
    for chunk in _chunks(sorted(set(customer_ids))):
        conn.execute(sa.update(t).where(t.c.customer_id.in_(chunk)).values(enforced_at=when))


def record_audit(
    conn: Connection,
    *,
    customer_id: str,
    salt: str,
    action: str,
    actor: str,
    erased: dict[str, int],
    at: datetime | None = None,
) -> str:
    """Write one audit row (no personal data) in the caller's transaction; returns its subject hash."""
    digest = subject_hash(customer_id, salt=salt)
    conn.execute(
        sa.insert(audit).values(
            subject_hash=digest,
            action=action,
            at=at or datetime.now(UTC),
            actor=actor,
            erased=json.dumps(erased, sort_keys=True),
        )
    )
    return digest


def audit_records(engine: Engine, *, subject: str | None = None) -> list[AuditRecord]:
    """Audit rows, oldest first (optionally of one subject hash)."""
    query = sa.select(audit).order_by(audit.c.id)
    if subject is not None:
        query = query.where(audit.c.subject_hash == subject)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [AuditRecord(r.subject_hash, r.action, _as_utc(r.at), r.actor, json.loads(r.erased)) for r in rows]  # type: ignore[arg-type]

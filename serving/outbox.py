"""Transactional outbox: tag changes wait here, in Persona's state database, until the CRM has them.

The outbox table lives in the same database as current tags and tag history (`settings.state_url`), so
`enqueue` runs inside the caller's transaction: a tag change and its outbox entry commit together or not
at all. The dispatcher then claims entries under a lease (a killed dispatcher's claims expire and are
delivered again), and settles them as delivered, retried later, dead-lettered or superseded.

Statuses: `pending` (waiting or leased), `delivered`, `dead` (needs `persona crm replay`), `superseded`
(a newer change of the same customer's tag was enqueued before this one went out; sending it would
overwrite the newer value), `unmatched` (the customer has no CRM record key yet, e.g. an email- or
phone-only customer: parked, not dead; `release_unmatched` puts it back in the queue once a later ingest
gives the customer a key, and a newer change of the same tag supersedes it meanwhile).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.statedb import bind_value, execute_many, make_state_engine
from serving.changes import TagChange

__all__ = ["Outbox", "OutboxEntry", "DeadLetter", "make_state_engine", "add_missing_columns"]

PENDING, DELIVERED, DEAD, SUPERSEDED, UNMATCHED = "pending", "delivered", "dead", "superseded", "unmatched"
STATUSES = (PENDING, DELIVERED, DEAD, SUPERSEDED, UNMATCHED)
_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit

metadata = sa.MetaData()


def _outbox_table(name: str) -> sa.Table:
    """An outbox table: CRM tag changes (`crm_outbox`) and trigger actions (`trigger_outbox`) alike."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(512), nullable=False),
        # a stable id per change (sent to the CRM, kept through retries) and its sequence number among
        # the changes of the same (customer, tag): the CRM side applies a change only if it is newer
        sa.Column("change_id", sa.String(32), nullable=True),
        sa.Column("seq", sa.Integer, nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("crm_field", sa.String(128), nullable=False),
        sa.Column("old_value", sa.Text, nullable=True),
        sa.Column("new_value", sa.Text, nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("produced_by", sa.String(256), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, default=PENDING),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        # Times of the dispatcher's clock as epoch seconds: portable across SQLite and PostgreSQL and
        # directly comparable with an injected test clock.
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        # claims read due entries in this order, so the index serves WHERE and ORDER BY (no sort)
        sa.Index(f"ix_{name}_due", "status", "next_attempt_at", "id"),
        sa.Index(f"ix_{name}_customer_tag", "customer_id", "tag", "id"),
        sa.Index(f"ix_{name}_lease", "lease_owner"),
    )


outbox_table = _outbox_table("crm_outbox")
# trigger actions: `tag` holds the trigger rule, `crm_field` the action; every firing is delivered
trigger_outbox_table = _outbox_table("trigger_outbox")
# segment list memberships: `tag` holds the segment, `crm_field` the list, new_value "member" or null
segment_outbox_table = _outbox_table("segment_outbox")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One claimed outbox row: the change to deliver plus its delivery bookkeeping."""

    id: int
    change: TagChange
    attempts: int
    created_at: float = 0.0  # when it was queued (dispatcher clock): retries stop `give_up_after` later


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered entry as `persona crm status` shows it (customer id only, no PII)."""

    id: int
    customer_id: str
    tag: str
    new_value: str | None
    attempts: int
    reason: str


def add_missing_columns(engine: Engine, table: sa.Table) -> None:
    """ALTER TABLE ... ADD COLUMN for nullable columns of `table` an existing database lacks (schema
    changes are additive, so a state database of an older release keeps working)."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    missing = [c for c in table.columns if c.name not in present]
    if not missing:
        return
    with engine.begin() as conn:
        for column in missing:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _uuid4_hex(n: int) -> list[str]:
    """`n` random version-4 UUIDs as 32 hex digits (what `uuid.uuid4().hex` gives), from one read of
    the OS's random source instead of one per id."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Outbox:
    """The outbox table of one state database. Methods that take `conn` run in the caller's
    transaction; the others open their own short transaction."""

    def __init__(self, engine: Engine, *, table: sa.Table = outbox_table, supersede: bool = True) -> None:
        self.engine = engine
        self.table = table
        # CRM tags: a newer value of the same tag makes an unsent older one moot. Triggers: every
        # firing is an event of its own and is delivered (supersede=False).
        self.supersede = supersede

    def create_schema(self) -> None:
        """Create the outbox table and its indexes if missing (idempotent); columns added since an
        older release are added to an existing table."""
        metadata.create_all(self.engine, tables=[self.table], checkfirst=True)
        add_missing_columns(self.engine, self.table)

    # -- producer side -------------------------------------------------------------------------
    def enqueue(self, conn: Connection, changes: list[TagChange], *, now: float | None = None) -> int:
        """Add `changes` in the caller's transaction; returns how many rows were stored.

        Idempotent by `TagChange.idempotency_key`: a change whose key equals the latest entry already
        queued for the same (customer, tag, crm_field) is not stored again (a retried scoring request
        enqueues nothing). A value that flips back (A -> B -> A under one model version) repeats an older
        key but is a real change, so only the *latest* entry per (customer, tag, crm_field) is compared.
        (A tag and a segment have one CRM field each; a trigger rule has one entry per action.)
        """
        if not changes:
            return 0
        t = self.table
        stamp = datetime.now(UTC).timestamp() if now is None else now
        customers = sorted({c.customer_id for c in changes})
        latest: dict[tuple[str, str, str], str] = {}
        seqs: dict[tuple[str, str, str], int] = {}
        for chunk in _chunks(customers):
            newest = (
                sa.select(sa.func.max(t.c.id))
                .where(t.c.customer_id.in_(chunk))
                .group_by(t.c.customer_id, t.c.tag, t.c.crm_field)
                .scalar_subquery()
            )
            for customer_id, tag, crm_field, key, seq, entry_id in conn.execute(
                sa.select(
                    t.c.customer_id, t.c.tag, t.c.crm_field, t.c.idempotency_key, t.c.seq, t.c.id
                ).where(t.c.id.in_(newest))
            ):
                latest[(customer_id, tag, crm_field)] = key
                # rows of an older release have no seq: their id orders them just as well
                seqs[(customer_id, tag, crm_field)] = seq if seq is not None else entry_id
        kept: list[tuple[TagChange, str, int]] = []
        for change in changes:
            key = change.idempotency_key
            pair = (change.customer_id, change.tag, change.crm_field)
            if latest.get(pair) == key:
                continue
            latest[pair] = key
            seqs[pair] = seqs.get(pair, 0) + 1
            kept.append((change, key, seqs[pair]))
        if not kept:
            return 0
        # Bound as the driver stores them, on its own cursor (`execute_many`): SQLAlchemy's per-row
        # parameter processing and a uuid4() call per row were most of the cost of queueing a million
        # changes. The JSON is json.dumps, as the column's own serializer writes it.
        when: dict[datetime, Any] = {}
        ids = _uuid4_hex(len(kept))
        rows = []
        for (change, key, seq), change_id in zip(kept, ids, strict=True):
            at = change.changed_at
            if at not in when:
                when[at] = bind_value(conn, t.c.changed_at, _as_utc(at))
            rows.append(
                (
                    key,
                    change_id,
                    seq,
                    change.customer_id,
                    change.tag,
                    change.crm_field,
                    change.old_value,
                    change.new_value,
                    when[at],
                    change.produced_by,
                    json.dumps(change.inputs),
                    PENDING,
                    0,
                    stamp,
                    stamp,
                )
            )
        json_param = "CAST({p} AS JSON)" if conn.dialect.name == "postgresql" else "{p}"
        execute_many(
            conn,
            f"INSERT INTO {t.name} (idempotency_key, change_id, seq, customer_id, tag, crm_field, "
            "old_value, new_value, changed_at, produced_by, inputs, status, attempts, created_at, "
            f"next_attempt_at) VALUES ({', '.join(['{p}'] * 10)}, {json_param}, "
            f"{', '.join(['{p}'] * 4)})",
            rows,
        )
        return len(rows)

    # -- dispatcher side -----------------------------------------------------------------------
    def claim(self, *, limit: int, now: float, lease_seconds: float) -> tuple[list[OutboxEntry], int]:
        """Lease up to `limit` due entries (longest due first, then oldest) for `lease_seconds`.

        Returns (entries to send, number superseded): a claimed entry with a newer entry for the same
        (customer, tag) is marked superseded instead of being sent.
        """
        t = self.table
        owner = uuid.uuid4().hex
        due = sa.and_(
            t.c.status == PENDING,
            t.c.next_attempt_at <= now,
            sa.or_(t.c.lease_expires_at.is_(None), t.c.lease_expires_at <= now),
        )
        with self.engine.begin() as conn:
            pick = sa.select(t.c.id).where(due).order_by(t.c.next_attempt_at, t.c.id).limit(limit)
            lease = {"lease_owner": owner, "lease_expires_at": now + lease_seconds}
            if conn.dialect.name == "postgresql":
                # A CTE runs once (a LIMIT ... FOR UPDATE sub-select inside IN may be re-run and lease
                # more than `limit` rows); SKIP LOCKED lets concurrent dispatchers pass each other's rows.
                picked = pick.with_for_update(skip_locked=True).cte("picked")
                conn.execute(sa.update(t).where(t.c.id == picked.c.id).values(**lease))
            elif conn.dialect.name == "sqlite":
                # one writer at a time, the statement is atomic: look rows up by primary key only
                # (repeating `due` here makes SQLite scan every pending row)
                conn.execute(sa.update(t).where(t.c.id.in_(pick.scalar_subquery())).values(**lease))
            else:
                # `due` is repeated outside the sub-select so a row leased meanwhile is re-checked.
                conn.execute(sa.update(t).where(t.c.id.in_(pick.scalar_subquery()), due).values(**lease))
            rows = conn.execute(sa.select(t).where(t.c.lease_owner == owner).order_by(t.c.id)).all()
            if not rows:
                return [], 0
            newest: dict[tuple[str, str], int] = {}
            for chunk in _chunks(sorted({r.customer_id for r in rows}) if self.supersede else []):
                for customer_id, tag, max_id in conn.execute(
                    sa.select(t.c.customer_id, t.c.tag, sa.func.max(t.c.id))
                    .where(t.c.customer_id.in_(chunk))
                    .group_by(t.c.customer_id, t.c.tag)
                ):
                    newest[(customer_id, tag)] = max_id
            stale = [r.id for r in rows if newest.get((r.customer_id, r.tag), r.id) != r.id]
            for chunk in _chunks(stale):
                conn.execute(
                    sa.update(t)
                    .where(t.c.id.in_(chunk))
                    .values(status=SUPERSEDED, lease_owner=None, lease_expires_at=None)
                )
        stale_ids = set(stale)
        entries = [
            OutboxEntry(
                id=r.id,
                attempts=r.attempts,
                change=TagChange(
                    customer_id=r.customer_id,
                    tag=r.tag,
                    crm_field=r.crm_field,
                    old_value=r.old_value,
                    new_value=r.new_value,
                    changed_at=_as_utc(r.changed_at),
                    produced_by=r.produced_by,
                    inputs=r.inputs or {},
                    change_id=r.change_id or f"outbox-{r.id}",
                    seq=r.seq if r.seq is not None else r.id,
                ),
                created_at=r.created_at,
            )
            for r in rows
            if r.id not in stale_ids
        ]
        return entries, len(stale)

    def mark_delivered(self, ids: Sequence[int], *, now: float) -> None:
        """Settle entries the CRM accepted."""
        t = self.table
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids)):
                conn.execute(
                    sa.update(t)
                    .where(t.c.id.in_(chunk))
                    .values(
                        status=DELIVERED,
                        delivered_at=now,
                        lease_owner=None,
                        lease_expires_at=None,
                        last_error=None,
                    )
                )

    def retry_later(
        self,
        retry_at: dict[int, float],
        *,
        error: str,
        give_up_before: float | None = None,
        count_attempt: bool = True,
    ) -> int:
        """Return entries to the queue, due at `retry_at[id]`. With `count_attempt` each one spends an
        attempt, and those queued before `give_up_before` (the time bound of retries) are dead-lettered
        with `error`. Returns how many died."""
        t = self.table
        died = 0
        with self.engine.begin() as conn:
            by_time: dict[float, list[int]] = {}
            for entry_id, at in retry_at.items():
                by_time.setdefault(at, []).append(entry_id)
            for at, ids in by_time.items():
                for chunk in _chunks(ids):
                    values: dict[str, Any] = {
                        "next_attempt_at": at,
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "last_error": error[:2000],
                    }
                    if count_attempt:
                        values["attempts"] = t.c.attempts + 1
                    conn.execute(
                        sa.update(t).where(t.c.id.in_(chunk), t.c.status == PENDING).values(**values)
                    )
            if count_attempt and give_up_before is not None:
                for chunk in _chunks(list(retry_at)):
                    died += conn.execute(
                        sa.update(t)
                        .where(t.c.id.in_(chunk), t.c.created_at <= give_up_before, t.c.status == PENDING)
                        .values(
                            status=DEAD, last_error=f"gave up retrying (crm.give_up_after): {error}"[:2000]
                        )
                    ).rowcount
        return died

    def dead_letter(self, reasons: dict[int, str]) -> None:
        """Dead-letter entries the CRM rejected for good, each with its reason."""
        t = self.table
        with self.engine.begin() as conn:
            for entry_id, reason in reasons.items():
                conn.execute(
                    sa.update(t)
                    .where(t.c.id == entry_id, t.c.status == PENDING)
                    .values(
                        status=DEAD,
                        attempts=t.c.attempts + 1,
                        last_error=reason[:2000],
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                )

    def park_unmatched(self, reasons: dict[int, str]) -> None:
        """Park entries whose customer has no CRM record key yet (status `unmatched`, not dead). Where a
        newer change of the same tag supersedes older ones, older parked entries of the same (customer,
        tag) become `superseded`: one parked entry per customer and tag waits for the key."""
        if not reasons:
            return
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(  # one statement, many parameter sets
                sa.update(t)
                .where(t.c.id == sa.bindparam("entry_id"), t.c.status == PENDING)
                .values(
                    status=UNMATCHED,
                    last_error=sa.bindparam("reason"),
                    lease_owner=None,
                    lease_expires_at=None,
                ),
                [{"entry_id": entry_id, "reason": reason[:2000]} for entry_id, reason in reasons.items()],
            )
            if not self.supersede:
                return
            parked = list(reasons)
            pairs: dict[tuple[str, str], int] = {}
            for chunk in _chunks(parked):
                for entry_id, customer_id, tag in conn.execute(
                    sa.select(t.c.id, t.c.customer_id, t.c.tag).where(t.c.id.in_(chunk))
                ):
                    pairs[(customer_id, tag)] = max(entry_id, pairs.get((customer_id, tag), 0))
            stale: list[int] = []
            for chunk in _chunks(sorted({c for c, _ in pairs})):
                for entry_id, customer_id, tag in conn.execute(
                    sa.select(t.c.id, t.c.customer_id, t.c.tag).where(
                        t.c.customer_id.in_(chunk), t.c.status == UNMATCHED
                    )
                ):
                    if entry_id < pairs.get((customer_id, tag), 0):
                        stale.append(entry_id)
            for chunk in _chunks(stale):
                conn.execute(sa.update(t).where(t.c.id.in_(chunk)).values(status=SUPERSEDED))

    def unmatched_customers(self) -> set[str]:
        """Customers with parked (`unmatched`) entries."""
        t = self.table
        with self.engine.connect() as conn:
            return {
                r[0]
                for r in conn.execute(sa.select(t.c.customer_id).where(t.c.status == UNMATCHED).distinct())
            }

    def release_unmatched(self, customers: Iterable[str], *, now: float) -> int:
        """Put the parked entries of `customers` (who now have a CRM record key) back in the queue, due
        now; returns how many."""
        t = self.table
        done = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(sorted(set(customers))):
                done += conn.execute(
                    sa.update(t)
                    .where(t.c.customer_id.in_(chunk), t.c.status == UNMATCHED)
                    .values(status=PENDING, next_attempt_at=now, last_error=None)
                ).rowcount
        return done

    def next_due(self) -> float | None:
        """Earliest time a pending entry becomes claimable (its retry time or its lease expiry)."""
        t = self.table
        when = sa.case(
            (
                sa.and_(t.c.lease_expires_at.is_not(None), t.c.lease_expires_at > t.c.next_attempt_at),
                t.c.lease_expires_at,
            ),
            else_=t.c.next_attempt_at,
        )
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(when)).where(t.c.status == PENDING)).scalar()

    # -- operations ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Entries per status (every status present, zero when none)."""
        t = self.table
        with self.engine.connect() as conn:
            found = dict(conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def dead_letters(self, *, limit: int = 20) -> list[DeadLetter]:
        """The oldest dead letters with their reasons."""
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.id, t.c.customer_id, t.c.tag, t.c.new_value, t.c.attempts, t.c.last_error)
                .where(t.c.status == DEAD)
                .order_by(t.c.id)
                .limit(limit)
            ).all()
        return [
            DeadLetter(
                id=r.id,
                customer_id=r.customer_id,
                tag=r.tag,
                new_value=r.new_value,
                attempts=r.attempts,
                reason=r.last_error or "",
            )
            for r in rows
        ]

    def replay(self, *, now: float, ids: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or those in `ids`) back in the queue with fresh attempts (and a fresh
        `give_up_after` window: `created_at` restarts now)."""
        t = self.table
        values = {
            "status": PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        with self.engine.begin() as conn:
            if ids is None:
                return conn.execute(sa.update(t).where(t.c.status == DEAD).values(**values)).rowcount
            done = 0
            for chunk in _chunks(list(ids)):
                done += conn.execute(
                    sa.update(t).where(t.c.id.in_(chunk), t.c.status == DEAD).values(**values)
                ).rowcount
            return done

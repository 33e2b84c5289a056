"""The embedded connector: write tags straight into the CRM's own SQL database (any SQLAlchemy URL).

Tables (created if missing):
- `persona_tags`: the current value of each tag per CRM record (`contact_id`: the CRM's own id of the
  record, see `serving.record_keys`: a contact id, else e.g. the orders' customer number), with the
  `seq` and `change_id` of the change that set it. A customer with no record id is not written: its
  entries come back unmatched (parked in the outbox until a later ingest gives it a key).
- `persona_tag_history`: every applied change.
A change is applied only if its sequence number (per customer and tag, from the outbox) is newer than
the stored one: a value that flips back (low -> high -> low) lands, a re-delivered or replayed change
does not apply again, and a late older change never overwrites a newer one. One transaction per batch:
a batch is applied completely or not at all, so a kill never leaves half of one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.connectors.base import BatchRejected, Connector, SendResult, TransientCrmError, no_record_reason
from serving.outbox import OutboxEntry, add_missing_columns
from serving.record_keys import RecordKeys

metadata = sa.MetaData()
tags_table = sa.Table(
    "persona_tags",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("contact_id", sa.String(128), primary_key=True),
    sa.Column("crm_field", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("produced_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idempotency_key", sa.String(512), nullable=False),
    sa.Column("change_id", sa.String(32), nullable=True),
    sa.Column("seq", sa.Integer, nullable=True),
    sa.Index("ix_persona_tags_contact", "contact_id"),
)
history_table = sa.Table(
    "persona_tag_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("contact_id", sa.String(128), nullable=False),
    sa.Column("crm_field", sa.String(128), nullable=False),
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=True),
    sa.Column("produced_by", sa.String(256), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idempotency_key", sa.String(512), nullable=False),
    sa.Column("change_id", sa.String(32), nullable=True),
    sa.Column("seq", sa.Integer, nullable=True),
    sa.Index("ix_persona_tag_history_contact", "contact_id", "crm_field"),
)


def _upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE only by a newer sequence number (SQLite and PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return None
    stmt = insert(tags_table)
    return stmt.on_conflict_do_update(
        index_elements=["customer_id", "contact_id", "crm_field"],
        set_={
            "value": stmt.excluded.value,
            "produced_by": stmt.excluded.produced_by,
            "updated_at": stmt.excluded.updated_at,
            "idempotency_key": stmt.excluded.idempotency_key,
            "change_id": stmt.excluded.change_id,
            "seq": stmt.excluded.seq,
        },
        where=sa.func.coalesce(tags_table.c.seq, -1) < stmt.excluded.seq,
    )


class SqlConnector(Connector):
    """Upserts tag values into `persona_tags` (+ history) of the CRM database at `engine`."""

    name = "sql"
    max_batch = 5000

    def __init__(self, engine: Engine, *, resolver: RecordKeys) -> None:
        self.engine = engine
        self.resolver = resolver
        self._schema_ready = False

    def create_schema(self) -> None:
        """Create the tag tables in the CRM database if missing."""

        metadata.create_all(self.engine, checkfirst=True)
        for table in (tags_table, history_table):
            add_missing_columns(self.engine, table)
        self._schema_ready = True

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        """Apply `entries` in one transaction; keys applied before are skipped (counted as duplicates)."""
        if not entries:
            return SendResult()
        try:
            if not self._schema_ready:
                self.create_schema()
            return self._apply(entries)
        except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
            raise BatchRejected(f"CRM database {self._where()} refused the batch: {exc.orig}") from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
            raise TransientCrmError(
                f"CRM database {self._where()} unavailable: {exc.orig or exc}", outage=True
            ) from None

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _apply(self, entries: list[OutboxEntry]) -> SendResult:
        contacts = self.resolver.records_for({e.change.customer_id for e in entries})
        unmatched = {
            e.id: no_record_reason(e.change.customer_id, self.resolver.record_key)
            for e in entries
            if not contacts.get(e.change.customer_id)
        }
        entries = [e for e in entries if e.id not in unmatched]
        now = datetime.now(UTC)
        # the newest change per (customer, contact, field) in this batch; older ones are duplicates
        wanted: dict[tuple[str, str, str], OutboxEntry] = {}
        for entry in entries:
            change = entry.change
            for contact_id in contacts[change.customer_id]:
                key = (change.customer_id, contact_id, change.crm_field)
                held = wanted.get(key)
                if held is None or _seq(held) < _seq(entry):
                    wanted[key] = entry
        t = tags_table
        with self.engine.begin() as conn:
            stored: dict[tuple[str, str, str], int] = {}
            customers = sorted({k[0] for k in wanted})
            for start in range(0, len(customers), 500):
                query = sa.select(t.c.customer_id, t.c.contact_id, t.c.crm_field, t.c.seq).where(
                    t.c.customer_id.in_(customers[start : start + 500])
                )
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()  # two dispatchers: one applies, the other waits
                for customer_id, contact_id, field, seq in conn.execute(query):
                    stored[(customer_id, contact_id, field)] = -1 if seq is None else seq
            current: list[dict[str, Any]] = []
            history: list[dict[str, Any]] = []
            applied_entries: set[int] = set()
            for (customer_id, contact_id, field), entry in wanted.items():
                change = entry.change
                if _seq(entry) <= stored.get((customer_id, contact_id, field), -1):
                    continue  # already applied (a re-delivery) or older than what the CRM holds
                applied_entries.add(entry.id)
                base = {
                    "customer_id": customer_id,
                    "contact_id": contact_id,
                    "crm_field": field,
                    "produced_by": change.produced_by,
                    "idempotency_key": change.idempotency_key,
                    "change_id": change.change_id,
                    "seq": _seq(entry),
                }
                current.append({**base, "value": change.new_value, "updated_at": change.changed_at})
                history.append(
                    {
                        **base,
                        "old_value": change.old_value,
                        "new_value": change.new_value,
                        "changed_at": change.changed_at,
                        "applied_at": now,
                    }
                )
            if current:
                conn.execute(sa.insert(history_table), history)
                self._write_current(conn, current)
        return SendResult(
            unmatched=unmatched, duplicates=sum(1 for e in entries if e.id not in applied_entries)
        )

    def _write_current(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        upsert = _upsert_statement(conn.dialect.name)
        if upsert is not None:
            conn.execute(upsert, rows)
            return
        # Other databases: update when newer, insert when absent.
        t = tags_table
        for row in rows:
            match = sa.and_(
                t.c.customer_id == row["customer_id"],
                t.c.contact_id == row["contact_id"],
                t.c.crm_field == row["crm_field"],
            )
            existing = conn.execute(sa.select(t.c.seq).where(match)).first()
            if existing is None:
                conn.execute(sa.insert(t).values(**row))
            elif (existing.seq if existing.seq is not None else -1) < row["seq"]:
                conn.execute(sa.update(t).where(match).values(**row))

    def close(self) -> None:
        self.engine.dispose()


def _seq(entry: OutboxEntry) -> int:
    """The change's sequence number; an entry without one (built by hand) orders by its outbox id."""
    return entry.change.seq if entry.change.seq is not None else entry.id

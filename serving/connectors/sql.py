"""The embedded connector: write tags straight into the CRM's own SQL database (any SQLAlchemy URL).

Tables (created if missing):
- `persona_tags`: the current value of each tag per CRM record (`contact_id`: the CRM's own id of the
  record, see `serving.record_keys`: a contact id, else e.g. the orders' customer number); a newer
  `updated_at` is never overwritten by an older change. A customer with no record id is not written:
  its entries come back rejected (dead letters that say why).
- `persona_tag_history`: every applied change.
- `persona_applied_keys`: idempotency keys already applied, so a re-delivered batch applies nothing twice.
One transaction per batch: a batch is applied completely or not at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.connectors.base import BatchRejected, Connector, SendResult, TransientCrmError, no_record_reason
from serving.outbox import OutboxEntry
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
    sa.Index("ix_persona_tag_history_contact", "contact_id", "crm_field"),
)
applied_table = sa.Table(
    "persona_applied_keys",
    metadata,
    sa.Column("idempotency_key", sa.String(512), primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def _upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE that keeps a newer value (SQLite and PostgreSQL)."""
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
        },
        where=tags_table.c.updated_at <= stmt.excluded.updated_at,
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
            raise TransientCrmError(f"CRM database {self._where()} unavailable: {exc.orig or exc}") from None

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _apply(self, entries: list[OutboxEntry]) -> SendResult:
        contacts = self.resolver.records_for({e.change.customer_id for e in entries})
        rejected = {
            e.id: no_record_reason(e.change.customer_id, self.resolver.record_key)
            for e in entries
            if not contacts.get(e.change.customer_id)
        }
        entries = [e for e in entries if e.id not in rejected]
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            keys = list({e.change.idempotency_key for e in entries})
            done: set[str] = set()
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                done.update(
                    conn.execute(
                        sa.select(applied_table.c.idempotency_key).where(
                            applied_table.c.idempotency_key.in_(chunk)
                        )
                    ).scalars()
                )
            duplicates = 0
            current: list[dict[str, Any]] = []
            history: list[dict[str, Any]] = []
            applied: list[dict[str, Any]] = []
            for entry in entries:
                change = entry.change
                key = change.idempotency_key
                if key in done:
                    duplicates += 1
                    continue
                done.add(key)
                applied.append({"idempotency_key": key, "applied_at": now})
                for contact_id in contacts[change.customer_id]:
                    base = {
                        "customer_id": change.customer_id,
                        "contact_id": contact_id,
                        "crm_field": change.crm_field,
                        "produced_by": change.produced_by,
                        "idempotency_key": key,
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
            if applied:
                conn.execute(sa.insert(applied_table), applied)
                conn.execute(sa.insert(history_table), history)
                self._write_current(conn, current)
        return SendResult(rejected=rejected, duplicates=duplicates)

    def _write_current(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        upsert = _upsert_statement(conn.dialect.name)
        if upsert is not None:
            conn.execute(upsert, rows)
            return
        # Other databases: update when not older, insert when absent.
        t = tags_table
        for row in rows:
            match = sa.and_(
                t.c.customer_id == row["customer_id"],
                t.c.contact_id == row["contact_id"],
                t.c.crm_field == row["crm_field"],
            )
            existing = conn.execute(sa.select(t.c.updated_at).where(match)).first()
            if existing is None:
                conn.execute(sa.insert(t).values(**row))
            elif existing.updated_at.replace(tzinfo=None) <= row["updated_at"].replace(tzinfo=None):
                conn.execute(sa.update(t).where(match).values(**row))

    def close(self) -> None:
        self.engine.dispose()

"""The promotion history: every gate decision and every move of `champion` (gate promotion, forced
promotion, rollback, revert after a failed multi-model promotion), appended to one table that nothing
overwrites.

Where and why: table `promotion_history` in Persona's state database (`state_url`). MLflow version tags
are mutable (a rollback used to overwrite `champion.promoted_by`), and a JSONL file under `data_dir`
is neither shared by several machines nor transactional. The state database is already the durable,
shared store of audit data (the tag history), works on SQLite and PostgreSQL, and lets the database
itself refuse changes: triggers abort any UPDATE or DELETE on the table, so the history is append-only
even for someone with a SQL prompt and no Persona code in between.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from configs.settings import Settings

EVENTS = ("gate", "promote", "force", "rollback", "revert")

metadata = sa.MetaData()
promotion_history = sa.Table(
    "promotion_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),  # one of EVENTS
    sa.Column("kind", sa.String(32), nullable=False),  # segments | churn | conversion
    sa.Column("model", sa.String(256), nullable=False),  # registered model name
    sa.Column("from_version", sa.String(32), nullable=True),  # champion before (None: none)
    sa.Column("to_version", sa.String(32), nullable=True),  # version decided on / champion after
    sa.Column("decision", sa.String(16), nullable=True),  # gate: promote | reject
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),  # JSON: the numbers compared
    sa.Index("ix_promotion_history_kind", "kind", "id"),
)

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS promotion_history_no_{op.lower()} BEFORE {op} ON promotion_history "
    "BEGIN SELECT RAISE(ABORT, 'promotion_history is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
_POSTGRES_TRIGGER = [
    "CREATE OR REPLACE FUNCTION persona_promotion_history_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'promotion_history is append-only'; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS promotion_history_append_only ON promotion_history",
    "CREATE TRIGGER promotion_history_append_only BEFORE UPDATE OR DELETE ON promotion_history "
    "FOR EACH ROW EXECUTE FUNCTION persona_promotion_history_append_only()",
]


@dataclass(frozen=True)
class PromotionEvent:
    """One row of the history."""

    id: int
    at: datetime
    event: str
    kind: str
    model: str
    from_version: str | None
    to_version: str | None
    decision: str | None
    actor: str
    reason: str
    metrics: dict[str, Any]


def default_actor(role: str | None = None) -> str:
    """Who acts: `user@host`, prefixed by the role for automatic decisions (e.g. `gate (ops@box)`)."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    who = f"{user}@{socket.gethostname()}"
    return f"{role} ({who})" if role else who


class PromotionLog:
    """Append and read the promotion history in the state database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._ready = False

    @classmethod
    def open(cls, settings: Settings) -> PromotionLog:
        url = settings.url(settings.state_url)
        sa_url = sa.make_url(url)
        if sa_url.get_backend_name() == "sqlite":
            if sa_url.database and sa_url.database != ":memory:":
                Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        return cls(engine)

    def create_schema(self) -> None:
        """The table and the triggers that make it append-only (idempotent)."""
        if self._ready:
            return
        metadata.create_all(self.engine, checkfirst=True)
        statements = {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGER}.get(
            self.engine.dialect.name, []
        )
        with self.engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)
        self._ready = True

    def append(
        self,
        *,
        event: str,
        kind: str,
        model: str,
        from_version: str | None,
        to_version: str | None,
        reason: str,
        metrics: dict[str, Any] | None = None,
        decision: str | None = None,
        actor: str | None = None,
        at: datetime | None = None,
    ) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown promotion event {event!r} (known: {', '.join(EVENTS)})")
        self.create_schema()
        with self.engine.begin() as conn:
            conn.execute(
                promotion_history.insert().values(
                    at=at or datetime.now(UTC),
                    event=event,
                    kind=kind,
                    model=model,
                    from_version=from_version,
                    to_version=to_version,
                    decision=decision,
                    actor=actor or default_actor(),
                    reason=reason,
                    metrics=json.dumps(metrics or {}, sort_keys=True, default=str),
                )
            )

    def read(self, kind: str | None = None) -> list[PromotionEvent]:
        """The history in the order it happened (optionally of one kind)."""
        self.create_schema()
        h = promotion_history
        query = sa.select(h).order_by(h.c.id)
        if kind is not None:
            query = query.where(h.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            PromotionEvent(
                id=r.id,
                at=r.at.replace(tzinfo=UTC) if r.at.tzinfo is None else r.at,
                event=r.event,
                kind=r.kind,
                model=r.model,
                from_version=r.from_version,
                to_version=r.to_version,
                decision=r.decision,
                actor=r.actor,
                reason=r.reason,
                metrics=json.loads(r.metrics),
            )
            for r in rows
        ]

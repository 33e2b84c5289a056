"""The outbox stores a change exactly as SQLAlchemy's own insert of the table would, on SQLite and on a
real PostgreSQL (`enqueue` binds values itself on the driver's cursor, for speed at a million rows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.changes import TagChange
from serving.outbox import PENDING, Outbox, _uuid4_hex, make_state_engine
from tests.service.conftest import new_database

STAMP = 1_767_600_000.25
# aware in UTC and in another offset, with microseconds: what the column's own type makes of each
TIMES = [
    datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC),
    datetime(2026, 1, 5, 17, 45, 1, tzinfo=timezone(timedelta(hours=8))),
]


def changes(n: int = 40) -> list[TagChange]:
    return [
        TagChange(
            customer_id=f"C{i:04d}",
            tag="churn_risk" if i % 2 else "segment",
            crm_field="persona_churn_risk" if i % 2 else "persona_segment",
            old_value=None if i % 3 else "low",
            new_value="high" if i % 5 else None,
            changed_at=TIMES[i % 2],
            produced_by=f"model:persona-churn@{i % 4}",
            inputs={"churn_probability": i / 7, "reasons": ["a", "é"], "n": i, "none": None, "nan": None},
        )
        for i in range(n)
    ]


def reference(engine: sa.Engine, box: Outbox, items: list[TagChange]) -> None:
    """The plain SQLAlchemy insert of the same rows (the column types bind every value)."""
    rows = [
        {
            "idempotency_key": c.idempotency_key,
            "change_id": "0" * 32,
            "seq": 1,
            "customer_id": c.customer_id,
            "tag": c.tag,
            "crm_field": c.crm_field,
            "old_value": c.old_value,
            "new_value": c.new_value,
            "changed_at": c.changed_at.astimezone(UTC),
            "produced_by": c.produced_by,
            "inputs": c.inputs,
            "status": PENDING,
            "attempts": 0,
            "created_at": STAMP,
            "next_attempt_at": STAMP,
        }
        for c in items
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(box.table), rows)


def stored(engine: sa.Engine, box: Outbox) -> tuple[list[tuple], list[tuple]]:
    """Every column as SQLAlchemy reads it back, and as the database holds it (text casts)."""
    t = box.table
    cols = [c for c in t.c if c.name not in ("id", "change_id")]
    with engine.connect() as conn:
        typed = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(t.c.id))]
        raw = [
            tuple(r) for r in conn.execute(sa.select(*(sa.cast(c, sa.Text) for c in cols)).order_by(t.c.id))
        ]
    return typed, raw


def check(url_a: str, url_b: str) -> None:
    items = changes()
    box_a, box_b = Outbox(make_state_engine(url_a)), Outbox(make_state_engine(url_b))
    box_a.create_schema()
    box_b.create_schema()
    with box_a.engine.begin() as conn:
        assert box_a.enqueue(conn, items, now=STAMP) == len(items)
    reference(box_b.engine, box_b, items)
    assert stored(box_a.engine, box_a) == stored(box_b.engine, box_b)
    with box_a.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(box_a.table.c.change_id))]
    assert len(set(ids)) == len(items)
    assert all(uuid.UUID(hex=i).version == 4 and uuid.UUID(hex=i).hex == i for i in ids)
    # and what the dispatcher claims is the change that went in
    entries, _ = box_a.claim(limit=100, now=STAMP + 1, lease_seconds=5)
    assert sorted((e.change for e in entries), key=lambda c: c.customer_id) == items


def test_enqueue_stores_what_sqlalchemy_would_on_sqlite(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path}/a.sqlite", f"sqlite:///{tmp_path}/b.sqlite")


@pytest.mark.integration
def test_enqueue_stores_what_sqlalchemy_would_on_postgres(postgres: str) -> None:
    check(new_database(postgres), new_database(postgres))


def test_change_ids_are_random_version_4_uuids() -> None:
    ids = _uuid4_hex(10_000)
    assert len(set(ids)) == 10_000
    parsed = [uuid.UUID(hex=i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert [u.hex for u in parsed] == ids
    assert _uuid4_hex(0) == []

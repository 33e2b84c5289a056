"""The outbox and the sql connector on a real PostgreSQL server (the `postgres` fixture of
tests/service/conftest.py: initdb + pg_ctl on a free loopback port, stopped at the end)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.changes import TagChange
from serving.connectors.base import Connector, SendResult, TransientCrmError
from serving.connectors.sql import SqlConnector
from serving.dispatcher import Dispatcher
from serving.outbox import Outbox, OutboxEntry, make_state_engine
from serving.record_keys import RecordKeys
from tests.service.conftest import new_database

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def change(customer: str, value: str) -> TagChange:
    return TagChange(
        customer_id=customer,
        tag="churn_risk",
        crm_field="persona_churn_risk",
        old_value=None,
        new_value=value,
        changed_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        produced_by="model:persona-churn@3",
        inputs={"churn_probability": 0.42},
    )


def test_outbox_on_postgres_is_idempotent_and_round_trips(postgres: str) -> None:
    box = Outbox(make_state_engine(new_database(postgres)))
    box.create_schema()
    with box.engine.begin() as conn:
        assert box.enqueue(conn, [change("P1", "high"), change("P2", "low")], now=10.0) == 2
    with box.engine.begin() as conn:
        assert box.enqueue(conn, [change("P1", "high")], now=11.0) == 0
    one, _ = box.claim(limit=1, now=20.0, lease_seconds=5)
    assert [e.change for e in one] == [change("P1", "high")]
    entries, _ = box.claim(limit=5, now=20.0, lease_seconds=5)
    assert [e.change for e in entries] == [change("P2", "low")]
    assert box.claim(limit=5, now=21.0, lease_seconds=5) == ([], 0)
    assert box.next_due() == 25.0


def test_concurrent_claims_never_hand_out_an_entry_twice(postgres: str) -> None:
    box = Outbox(make_state_engine(new_database(postgres)))
    box.create_schema()
    with box.engine.begin() as conn:
        box.enqueue(conn, [change(f"P{i:04d}", "high") for i in range(2_000)], now=0.0)
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            entries, _ = box.claim(limit=37, now=1.0, lease_seconds=600)
            if not entries:
                return
            assert len(entries) <= 37
            with lock:
                seen.extend(e.id for e in entries)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(seen) == 2_000 and len(set(seen)) == 2_000


class LostAcks(Connector):
    """Commits every third batch and then reports a failure (the acknowledgement is lost)."""

    name = "lost-acks"

    def __init__(self, inner: SqlConnector) -> None:
        self.inner, self.max_batch, self.calls = inner, inner.max_batch, 0

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        self.calls += 1
        result = self.inner.send(entries)
        if self.calls % 3 == 0:
            raise TransientCrmError("connection reset after commit")
        return result


def test_sql_connector_on_postgres_applies_each_change_once(postgres: str, tmp_path: Path) -> None:
    import pandas as pd

    identity = tmp_path / "identity_map.parquet"
    # P0000 and P0001 are CRM contacts; the others are known by their orders' customer number K<i>
    others = [f"P{i:04d}" for i in range(2, 1_000)]
    pd.DataFrame(
        {
            "source": ["contacts"] * 3 + ["orders"] * len(others),
            "source_record_id": ["C1", "C2", "C3"] + [f"O{i}" for i in range(len(others))],
            "source_key": ["C1", "C2", "C3"] + [f"K{c[1:]}" for c in others],
            "customer_id": ["P0000", "P0000", "P0001", *others],
            "match_rule": ["contact_id"] * 3 + ["new"] * len(others),
        }
    ).to_parquet(identity)
    state = Outbox(make_state_engine(new_database(postgres)))
    state.create_schema()
    crm_url = new_database(postgres)
    connector = LostAcks(SqlConnector(make_state_engine(crm_url), resolver=RecordKeys(identity)))
    changes = [change(f"P{i:04d}", ["high", "low"][i % 2]) for i in range(1_000)]
    with state.engine.begin() as conn:
        state.enqueue(conn, changes, now=0.0)
    now = [0.0]
    dispatcher = Dispatcher(
        state,
        connector,
        batch_size=100,
        give_up_after=86400.0,
        base_delay=1.0,
        max_delay=5.0,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        rng=random.Random(2),
    )
    stats = dispatcher.run_until_empty()
    assert state.counts()["delivered"] == 1_000 and stats.duplicates > 0
    engine = sa.create_engine(crm_url)
    with engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT idempotency_key FROM persona_tag_history")).scalars().all()
        tags = conn.execute(
            sa.text(
                "SELECT customer_id, contact_id, value FROM persona_tags WHERE customer_id IN ('P0000', 'P0001')"
            )
        ).all()
        total = conn.execute(sa.text("SELECT count(*) FROM persona_tags")).scalar()
    # P0000 has two CRM contacts: one history row per contact record, each change once per record
    assert Counter(keys) == Counter(
        {c.idempotency_key: (2 if c.customer_id == "P0000" else 1) for c in changes}
    )
    assert sorted(tuple(t) for t in tags) == [
        ("P0000", "C1", "high"),
        ("P0000", "C2", "high"),
        ("P0001", "C3", "low"),
    ]
    # the others' tags are on the record of their customer number
    assert total == 1_000 + 1
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT contact_id FROM persona_tags WHERE customer_id = 'P0999'")
        ).scalars().all() == ["K0999"]
    engine.dispose()

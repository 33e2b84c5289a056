"""The sql connector against a real SQLite CRM: tags land on contact records, exactly once, through
injected failures and a locked database."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from serving.changes import TagChange
from serving.connectors import make_connector
from serving.connectors.base import Connector, SendResult, TransientCrmError
from serving.connectors.sql import SqlConnector
from serving.dispatcher import Dispatcher
from serving.outbox import Outbox, OutboxEntry, make_state_engine
from serving.record_keys import RecordKeys

T0 = datetime(2026, 1, 5, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def change(
    customer: str, value: str | None, *, at: datetime = T0, old: str | None = None, seq: int | None = None
) -> TagChange:
    return TagChange(
        seq=seq,
        change_id=None if seq is None else f"{customer}-{seq}",
        customer_id=customer,
        tag="churn_risk",
        crm_field="persona_churn_risk",
        old_value=old,
        new_value=value,
        changed_at=at,
        produced_by="model:persona-churn@3",
        inputs={"churn_probability": 0.7},
    )


def make_crm(data_dir: Path) -> str:
    """The generator's CRM shape (a `contacts` table) plus an identity map: P1 has two contact records,
    P2 one, P3 none (known from orders by email only: no key the CRM knows), P4 none but an orders
    customer number."""
    (data_dir / "raw").mkdir(parents=True, exist_ok=True)
    (data_dir / "clean").mkdir(parents=True, exist_ok=True)
    db = data_dir / "raw" / "crm.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, region TEXT)")
        conn.executemany(
            "INSERT INTO contacts VALUES (?, ?)", [("C1", "north"), ("C2", "north"), ("C3", "south")]
        )
    pd.DataFrame(
        {
            "source": ["contacts", "contacts", "contacts", "orders", "orders", "orders"],
            "source_record_id": ["C1", "C2", "C3", "O-17", "O-18", "O-19"],
            "source_key": ["C1", "C2", "C3", None, "K-4", "K-4"],
            "customer_id": ["P1", "P1", "P2", "P3", "P4", "P4"],
            "match_rule": ["contact_id", "phone_e164", "contact_id", "new", "new", "contact_id"],
        }
    ).to_parquet(data_dir / "clean" / "identity_map.parquet")
    return f"sqlite:///{db}"


def entries(changes: list[TagChange], start: int = 1) -> list[OutboxEntry]:
    return [OutboxEntry(id=start + i, change=c, attempts=0) for i, c in enumerate(changes)]


def rows(url: str, sql: str) -> list[tuple]:
    with sa.create_engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def test_tags_land_on_every_contact_record_of_the_customer(settings, data_dir: Path) -> None:
    url = make_crm(data_dir)
    connector = make_connector(settings)
    assert isinstance(connector, SqlConnector)
    batch = [change("P1", "high"), change("P2", "low"), change("P3", "medium"), change("P4", "low")]
    result = connector.send(entries(batch))
    # P3 has no key the CRM knows: reported as unmatched (parked, not dead), never written under an empty id
    assert result.rejected == {}
    assert result.unmatched == {
        3: "no CRM record for customer P3: no CRM contact id and no orders key (crm.record_key)"
    }
    assert result.duplicates == 0
    assert rows(url, "SELECT customer_id, contact_id, crm_field, value FROM persona_tags ORDER BY 1, 2") == [
        ("P1", "C1", "persona_churn_risk", "high"),
        ("P1", "C2", "persona_churn_risk", "high"),
        ("P2", "C3", "persona_churn_risk", "low"),
        ("P4", "K-4", "persona_churn_risk", "low"),  # no CRM contact: the orders' customer number
    ]
    assert rows(url, "SELECT count(*) FROM persona_tag_history") == [(4,)]
    assert rows(url, "SELECT count(*) FROM contacts") == [(3,)]  # the CRM's own rows are untouched


def test_a_resent_batch_is_not_applied_twice(settings, data_dir: Path) -> None:
    url = make_crm(data_dir)
    connector = make_connector(settings)
    batch = entries([change("P1", "high"), change("P2", "low")])
    connector.send(batch)
    again = connector.send(batch)
    assert again.duplicates == 2
    assert rows(url, "SELECT count(*) FROM persona_tag_history") == [(3,)]


def test_an_older_change_never_overwrites_a_newer_value(settings, data_dir: Path) -> None:
    url = make_crm(data_dir)
    connector = make_connector(settings)
    connector.send(entries([change("P2", "low", at=T0 + timedelta(days=1), seq=2)]))
    connector.send(entries([change("P2", "high", at=T0, seq=1)], start=5))  # late, older
    assert rows(url, "SELECT value, seq FROM persona_tags WHERE customer_id = 'P2'") == [("low", 2)]
    assert rows(url, "SELECT new_value FROM persona_tag_history ORDER BY id") == [("low",)]
    # an unset tag (None) is written as NULL
    connector.send(entries([change("P2", None, at=T0 + timedelta(days=2), old="low", seq=3)], start=9))
    assert rows(url, "SELECT value FROM persona_tags WHERE customer_id = 'P2'") == [(None,)]


def test_a_flip_back_lands_and_a_replay_does_not(settings, data_dir: Path) -> None:
    """low -> high -> low under one model version: the same (value, producer) twice, two changes."""
    url = make_crm(data_dir)
    connector = make_connector(settings)
    low, high, low_again = (
        change("P2", "low", seq=1),
        change("P2", "high", old="low", seq=2),
        change("P2", "low", old="high", seq=3),
    )
    assert low.idempotency_key == low_again.idempotency_key
    connector.send(entries([low]))
    connector.send(entries([high], start=2))
    connector.send(entries([low_again], start=3))
    assert rows(url, "SELECT value, seq FROM persona_tags WHERE customer_id = 'P2'") == [("low", 3)]
    # replays of any of them (a lost acknowledgement, `crm replay`) apply nothing
    for seq, item in enumerate([low, high, low_again], start=1):
        assert connector.send(entries([item], start=seq)).duplicates == 1
    assert rows(url, "SELECT new_value, seq FROM persona_tag_history ORDER BY id") == [
        ("low", 1),
        ("high", 2),
        ("low", 3),
    ]


def test_a_locked_crm_database_is_a_transient_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite"
    engine = sa.create_engine(url, connect_args={"timeout": 0.1})
    connector = SqlConnector(engine, resolver=RecordKeys(None))
    connector.create_schema()
    blocker = sqlite3.connect(tmp_path / "crm.sqlite")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TransientCrmError, match="database is locked"):
            connector.send(entries([change("P1", "high")]))
    finally:
        blocker.rollback()
        blocker.close()
    connector.send(entries([change("P1", "high")]))
    assert rows(url, "SELECT customer_id, contact_id, value FROM persona_tags") == [("P1", "P1", "high")]


class FlakyCrm(Connector):
    """The real sql connector behind injected faults: some calls fail before writing (CRM down), some
    fail after the transaction committed (acknowledgement lost), in a seeded random pattern."""

    name = "flaky-sql"

    def __init__(self, inner: SqlConnector, *, seed: int) -> None:
        self.inner = inner
        self.max_batch = inner.max_batch
        self.rng = random.Random(seed)
        self.calls = Counter[str]()
        self.down_for = 12  # the CRM is down for the first 12 calls

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        self.calls["total"] += 1
        if self.down_for > 0:
            self.down_for -= 1
            self.calls["down"] += 1
            raise TransientCrmError("CRM database unavailable: connection refused")
        roll = self.rng.random()
        if roll < 0.2:
            self.calls["before"] += 1
            raise TransientCrmError("connection reset before commit")
        result = self.inner.send(entries)
        if roll < 0.35:
            self.calls["after"] += 1
            raise TransientCrmError("connection reset after commit (acknowledgement lost)")
        return result


@pytest.mark.slow
def test_10k_changes_through_failures_are_applied_exactly_once(tmp_path: Path) -> None:
    n = 10_000
    state = Outbox(make_state_engine(f"sqlite:///{tmp_path}/state.sqlite"))
    state.create_schema()
    crm_url = f"sqlite:///{tmp_path}/crm.sqlite"
    inner = SqlConnector(make_state_engine(crm_url), resolver=RecordKeys(None))
    flaky = FlakyCrm(inner, seed=11)
    changes = [change(f"P{i:05d}", ["high", "medium", "low"][i % 3]) for i in range(n)]
    with state.engine.begin() as conn:
        assert state.enqueue(conn, changes, now=1_000.0) == n
    clock = FakeClock()
    dispatcher = Dispatcher(
        state,
        flaky,
        batch_size=250,
        give_up_after=86400.0,
        base_delay=0.5,
        max_delay=20.0,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(5),
    )
    stats = dispatcher.run_until_empty()
    assert state.counts() == {"pending": 0, "delivered": n, "dead": 0, "superseded": 0, "unmatched": 0}
    # faults happened, including committed batches whose acknowledgement was lost
    assert flaky.calls["down"] == 12 and flaky.calls["before"] > 0 and flaky.calls["after"] > 0
    # ...and their re-delivery found the keys already applied
    assert 0 < stats.duplicates <= flaky.calls["after"] * 250
    history = rows(crm_url, "SELECT idempotency_key, change_id FROM persona_tag_history")
    assert len(history) == n and len({c for _, c in history}) == n
    assert Counter(k for k, _ in history) == Counter(c.idempotency_key for c in changes)
    current = dict(rows(crm_url, "SELECT customer_id, value FROM persona_tags"))
    assert current == {c.customer_id: c.new_value for c in changes}


def test_a_missing_crm_database_is_not_created_silently(settings, data_dir: Path) -> None:
    from core.errors import CrmError

    with pytest.raises(CrmError, match=r"CRM database .*raw/crm.sqlite not found \(crm.url\)"):
        make_connector(settings)
    assert not (data_dir / "raw" / "crm.sqlite").exists()

"""Outbox: idempotent enqueue in the caller's transaction, leases, supersession, dead letters, replay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.changes import TagChange
from serving.outbox import Outbox, make_state_engine

AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def change(
    customer: str, value: str | None, *, tag: str = "churn_risk", by: str = "model:persona-churn@3"
) -> TagChange:
    return TagChange(
        customer_id=customer,
        tag=tag,
        crm_field=f"persona_{tag}",
        old_value=None,
        new_value=value,
        changed_at=AT,
        produced_by=by,
        inputs={"churn_probability": 0.81},
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(make_state_engine(f"sqlite:///{tmp_path}/state/persona.sqlite"))
    box.create_schema()
    return box


def enqueue(box: Outbox, changes: list[TagChange], now: float = 1000.0) -> int:
    with box.engine.begin() as conn:
        return box.enqueue(conn, changes, now=now)


def test_enqueue_is_idempotent_by_key(outbox: Outbox) -> None:
    assert enqueue(outbox, [change("P1", "high"), change("P2", "low")]) == 2
    # the same scoring request retried: nothing new
    assert enqueue(outbox, [change("P1", "high"), change("P2", "low")]) == 0
    # the same key twice in one call is stored once
    assert enqueue(outbox, [change("P3", "low"), change("P3", "low")]) == 1
    # another model version is another key
    assert enqueue(outbox, [change("P1", "high", by="model:persona-churn@4")]) == 1
    assert outbox.counts()["pending"] == 4


def test_value_flipping_back_is_a_real_change(outbox: Outbox) -> None:
    assert enqueue(outbox, [change("P1", "high")]) == 1
    assert enqueue(outbox, [change("P1", "low")]) == 1
    # same key as the first entry, but the CRM now holds "low": it must be queued again
    assert enqueue(outbox, [change("P1", "high")]) == 1
    with outbox.engine.connect() as conn:
        values = conn.execute(sa.select(outbox.table.c.new_value).order_by(outbox.table.c.id)).scalars().all()
    assert values == ["high", "low", "high"]


def test_enqueue_rolls_back_with_the_callers_transaction(outbox: Outbox) -> None:
    with pytest.raises(RuntimeError), outbox.engine.begin() as conn:
        outbox.enqueue(conn, [change("P1", "high")])
        raise RuntimeError("tag store failed after the enqueue")
    assert outbox.counts()["pending"] == 0


def test_enqueue_keeps_values_and_utc_time(outbox: Outbox) -> None:
    enqueue(outbox, [change("P9", None)])
    entries, superseded = outbox.claim(limit=10, now=1000.0, lease_seconds=30)
    assert superseded == 0
    (entry,) = entries
    assert entry.change == change("P9", None)
    assert entry.change.changed_at.tzinfo is not None and entry.change.changed_at == AT


def test_claim_leases_and_a_killed_claim_expires(outbox: Outbox) -> None:
    enqueue(outbox, [change(f"P{i}", "high") for i in range(5)])
    first, _ = outbox.claim(limit=3, now=1000.0, lease_seconds=30)
    assert [e.change.customer_id for e in first] == ["P0", "P1", "P2"]
    # leased rows are not handed out again before the lease ends
    second, _ = outbox.claim(limit=10, now=1010.0, lease_seconds=30)
    assert [e.change.customer_id for e in second] == ["P3", "P4"]
    assert outbox.claim(limit=10, now=1020.0, lease_seconds=30) == ([], 0)
    assert outbox.next_due() == 1030.0  # when the first lease runs out
    # the first claimer died without settling: its entries come back after the lease
    again, _ = outbox.claim(limit=10, now=1030.0, lease_seconds=30)
    assert [e.change.customer_id for e in again] == ["P0", "P1", "P2"]


def test_claim_supersedes_older_values_of_the_same_tag(outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high"), change("P2", "low")])
    enqueue(outbox, [change("P1", "low")])
    entries, superseded = outbox.claim(limit=10, now=1000.0, lease_seconds=30)
    assert superseded == 1
    assert [(e.change.customer_id, e.change.new_value) for e in entries] == [("P2", "low"), ("P1", "low")]
    assert outbox.counts()["superseded"] == 1


def test_retry_dead_letter_and_replay(outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high"), change("P2", "low")])
    entries, _ = outbox.claim(limit=10, now=1000.0, lease_seconds=30)
    ids = [e.id for e in entries]
    # queued at 1000: a time bound before that kills nothing
    assert outbox.retry_later({ids[0]: 1005.0, ids[1]: 1009.0}, error="503", give_up_before=999.0) == 0
    assert outbox.next_due() == 1005.0
    entries, _ = outbox.claim(limit=10, now=1009.0, lease_seconds=30)
    assert [e.attempts for e in entries] == [1, 1]
    # the second failure comes after the time bound (queued at or before 1000): both die with the reason
    assert (
        outbox.retry_later({i: 1100.0 for i in ids}, error="503 internal error", give_up_before=1000.0) == 2
    )
    assert outbox.counts() == {"pending": 0, "delivered": 0, "dead": 2, "superseded": 0, "unmatched": 0}
    (dead, _) = outbox.dead_letters(limit=10)
    assert dead.customer_id == "P1" and dead.attempts == 2
    assert dead.reason == "gave up retrying (crm.give_up_after): 503 internal error"
    assert outbox.replay(now=2000.0, ids=[ids[0]]) == 1
    entries, _ = outbox.claim(limit=10, now=2000.0, lease_seconds=30)
    assert [(e.id, e.attempts) for e in entries] == [(ids[0], 0)]
    outbox.mark_delivered([ids[0]], now=2001.0)
    assert outbox.counts() == {"pending": 0, "delivered": 1, "dead": 1, "superseded": 0, "unmatched": 0}


def test_rate_limit_release_spends_no_attempt(outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high")])
    (entry,), _ = outbox.claim(limit=10, now=1000.0, lease_seconds=30)
    outbox.retry_later({entry.id: 1002.0}, error="429", give_up_before=5000.0, count_attempt=False)
    (again,), _ = outbox.claim(limit=10, now=1002.0, lease_seconds=30)
    assert again.attempts == 0 and outbox.counts()["dead"] == 0

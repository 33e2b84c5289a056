"""record_and_enqueue: the tag store's changes and their outbox entries commit in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from serving.outbox import Outbox, make_state_engine
from serving.tag_store import TagStore
from serving.writeback import record_and_enqueue

AT = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
BY = {"churn_risk": "model:persona-churn@3", "segment": "model:persona-segments@2"}


@pytest.fixture
def state(tmp_path: Path) -> tuple[TagStore, Outbox]:
    engine = make_state_engine(f"sqlite:///{tmp_path}/state/persona.sqlite")
    store = TagStore(engine, crm_fields={"churn_risk": "persona_churn_risk", "segment": "persona_segment"})
    store.create_schema()
    box = Outbox(engine)
    box.create_schema()
    return store, box


def tags(**rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": list(rows),
            "churn_risk": [v[0] for v in rows.values()],
            "segment": [v[1] for v in rows.values()],
        }
    )


def queued(box: Outbox) -> list[tuple[str, str, str | None, str | None]]:
    entries, _ = box.claim(limit=100, now=10**10, lease_seconds=1)
    return sorted(
        (e.change.customer_id, e.change.crm_field, e.change.old_value, e.change.new_value) for e in entries
    )


def test_changes_are_recorded_and_queued_together(state: tuple[TagStore, Outbox]) -> None:
    store, box = state
    inputs = pd.DataFrame({"customer_id": ["P1", "P2"], "churn_probability": [0.8, 0.1]})
    changes = record_and_enqueue(
        store.engine, tag_store=store, tags=tags(P1=("high", "loyal"), P2=("low", "new")),
        produced_by=BY, inputs=inputs, at=AT, outbox=box,
    )  # fmt: skip
    assert len(changes) == 4
    # scoring again with one tag changed: only that change is recorded and queued
    again = record_and_enqueue(
        store.engine, tag_store=store, tags=tags(P1=("medium", "loyal"), P2=("low", "new")),
        produced_by=BY, inputs=inputs, at=AT, outbox=box,
    )  # fmt: skip
    assert [(c.customer_id, c.tag, c.old_value, c.new_value) for c in again] == [
        ("P1", "churn_risk", "high", "medium")
    ]
    assert box.counts()["pending"] == 5
    assert store.counts() == {"current": 4, "history": 5}
    # P1's first churn value never went out and is superseded by the newer one
    assert queued(box) == [
        ("P1", "persona_churn_risk", "high", "medium"),
        ("P1", "persona_segment", None, "loyal"),
        ("P2", "persona_churn_risk", None, "low"),
        ("P2", "persona_segment", None, "new"),
    ]
    assert box.counts()["superseded"] == 1


class BrokenOutbox(Outbox):
    def enqueue(self, conn, changes, *, now=None):  # noqa: ANN001, ANN201
        super().enqueue(conn, changes, now=now)
        raise OSError("disk full while writing the outbox")


def test_a_failing_enqueue_keeps_no_tag_change(state: tuple[TagStore, Outbox]) -> None:
    store, box = state
    record_and_enqueue(
        store.engine,
        tag_store=store,
        tags=tags(P1=("high", "loyal")),
        produced_by=BY,
        inputs=None,
        at=AT,
        outbox=box,
    )
    with pytest.raises(OSError, match="disk full"):
        record_and_enqueue(
            store.engine, tag_store=store, tags=tags(P1=("low", "loyal")), produced_by=BY, inputs=None, at=AT,
            outbox=BrokenOutbox(store.engine),
        )  # fmt: skip
    # neither the tag change nor its outbox entry survived: the CRM and Persona still agree
    assert [(t.tag, t.value) for t in store.current("P1")] == [("churn_risk", "high"), ("segment", "loyal")]
    assert store.counts()["history"] == 2 and box.counts()["pending"] == 2

"""The tag store on a real PostgreSQL server (the `postgres` fixture of tests/service/conftest.py):
same change detection as on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from serving import tag_store as ts
from serving.outbox import make_state_engine
from serving.tag_store import TagStore
from tests.service.conftest import new_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url(postgres: str) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return new_database(postgres)


@pytest.mark.parametrize("small_batch", [5_000, 1])  # by-id reads, and whole-tag reads
def test_only_changes_are_recorded_on_postgres(pg_url, monkeypatch, small_batch):
    monkeypatch.setattr(ts, "_SMALL_BATCH", small_batch)
    engine = make_state_engine(pg_url)
    store = TagStore(engine, crm_fields={"vip": "persona_vip"}, tag_inputs={"vip": ["monetary_365d"]})
    store.create_schema()
    with engine.begin() as conn:  # each parametrisation starts from empty tables
        conn.execute(sa.text("DELETE FROM tag_current"))
        conn.execute(sa.text("DELETE FROM tag_history"))
    t0 = datetime(2026, 11, 17, 3, tzinfo=UTC)
    inputs = pd.DataFrame({"customer_id": ["P1", "P2"], "monetary_365d": [9000.5, 10.0]})

    def apply(values, at):
        with engine.begin() as conn:
            return store.apply(
                conn,
                tags=pd.DataFrame({"customer_id": ["P1", "P2"], "vip": values}),
                produced_by={"vip": "rule:vip@v1"},
                inputs=inputs,
                at=at,
            )

    assert len(apply([True, False], t0)) == 2
    assert apply([True, False], t0 + timedelta(days=1)) == []
    changes = apply([False, False], t0 + timedelta(days=2))
    assert [(c.customer_id, c.old_value, c.new_value, c.inputs) for c in changes] == [
        ("P1", "true", "false", {"monetary_365d": 9000.5})
    ]
    history = store.history("P1")
    assert [(h.old_value, h.new_value, h.changed_at) for h in history] == [
        ("true", "false", t0 + timedelta(days=2)),
        (None, "true", t0),
    ]
    assert store.current("P2")[0].updated_at == t0
    engine.dispose()

"""Tag history: only changes are recorded, unchanged values are not rewritten, old/new/inputs are right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import ValidationFailed
from serving import tag_store as ts
from serving.tag_store import TagStore, tag_current, tag_history, value_strings

T0 = datetime(2026, 11, 17, 3, 0, tzinfo=UTC)  # a Tuesday
T1 = T0 + timedelta(days=1)
T2 = T0 + timedelta(days=2)
PRODUCED = {"churn_risk": "model:persona-churn@3", "vip": "rule:vip@v1"}


@pytest.fixture
def store(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    s = TagStore(
        engine,
        crm_fields={"churn_risk": "persona_churn_risk", "vip": "persona_vip"},
        tag_inputs={"churn_risk": ["churn_probability"], "vip": ["monetary_365d", "recency_days"]},
    )
    s.create_schema()
    s.create_schema()  # idempotent
    return s


def _apply(store, tags, inputs=None, at=T0, produced=PRODUCED):
    with store.engine.begin() as conn:
        return store.apply(conn, tags=pd.DataFrame(tags), produced_by=produced, inputs=inputs, at=at)


def _rows(store, table):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(table)).all()


INPUTS = pd.DataFrame(
    {
        "customer_id": ["P1", "P2"],
        "churn_probability": [0.81, 0.12],
        "monetary_365d": [5000.0, None],
        "recency_days": [3, 200],
    }
)


def test_first_apply_records_every_value_as_a_change(store):
    changes = _apply(
        store, {"customer_id": ["P1", "P2"], "churn_risk": ["high", "low"], "vip": [True, False]}, INPUTS
    )
    assert len(changes) == 4
    c = next(c for c in changes if c.customer_id == "P1" and c.tag == "churn_risk")
    assert (c.old_value, c.new_value, c.crm_field, c.produced_by) == (
        None,
        "high",
        "persona_churn_risk",
        PRODUCED["churn_risk"],
    )
    assert c.inputs == {"churn_probability": 0.81}
    assert c.changed_at == T0
    v = next(c for c in changes if c.customer_id == "P2" and c.tag == "vip")
    assert v.new_value == "false" and v.inputs == {"monetary_365d": None, "recency_days": 200}
    assert len(_rows(store, tag_current)) == 4 and len(_rows(store, tag_history)) == 4


def test_unchanged_values_are_not_rewritten(store):
    tags = {"customer_id": ["P1", "P2"], "churn_risk": ["high", "low"], "vip": [True, False]}
    _apply(store, tags, INPUTS, at=T0)
    assert _apply(store, tags, INPUTS, at=T1) == []
    assert len(_rows(store, tag_history)) == 4
    # updated_at still says when the value was set, not when it was last seen
    assert {r.updated_at.replace(tzinfo=UTC) for r in _rows(store, tag_current)} == {T0}


def test_a_change_records_old_new_time_version_and_inputs(store):
    _apply(store, {"customer_id": ["P1", "P2"], "churn_risk": ["low", "low"]}, INPUTS, at=T0)
    inputs = INPUTS.assign(churn_probability=[0.91, 0.12])
    changes = _apply(
        store,
        {"customer_id": ["P1", "P2"], "churn_risk": ["high", "low"]},
        inputs,
        at=T1,
        produced={"churn_risk": "model:persona-churn@4"},
    )
    assert [(c.customer_id, c.old_value, c.new_value) for c in changes] == [("P1", "low", "high")]
    history = store.history("P1")
    assert [(h.tag, h.old_value, h.new_value, h.changed_at) for h in history] == [
        ("churn_risk", "low", "high", T1),
        ("churn_risk", None, "low", T0),
    ]
    assert history[0].produced_by == "model:persona-churn@4" and history[0].inputs == {
        "churn_probability": 0.91
    }
    current = {c.tag: c for c in store.current("P1")}
    assert current["churn_risk"].value == "high" and current["churn_risk"].updated_at == T1
    assert current["churn_risk"].produced_by == "model:persona-churn@4"
    # P2 untouched
    assert store.current("P2")[0].updated_at == T0


def test_unset_is_a_change_once_then_nothing(store):
    _apply(store, {"customer_id": ["P1"], "churn_risk": ["high"]}, at=T0)
    changes = _apply(store, {"customer_id": ["P1"], "churn_risk": [None]}, at=T1)
    assert [(c.old_value, c.new_value) for c in changes] == [("high", None)]
    assert _apply(store, {"customer_id": ["P1"], "churn_risk": [None]}, at=T2) == []
    # a customer never tagged and now unset: no change either
    assert _apply(store, {"customer_id": ["P9"], "churn_risk": [None]}, at=T2) == []


def test_large_batches_read_current_values_per_tag(store, monkeypatch):
    monkeypatch.setattr(ts, "_SMALL_BATCH", 1)  # force the whole-tag read path on small data
    tags = {"customer_id": ["P1", "P2", "P3"], "churn_risk": ["high", "low", "medium"]}
    assert len(_apply(store, tags, at=T0)) == 3
    changed = {"customer_id": ["P1", "P2", "P3"], "churn_risk": ["high", "medium", "medium"]}
    assert [(c.customer_id, c.old_value, c.new_value) for c in _apply(store, changed, at=T1)] == [
        ("P2", "low", "medium")
    ]


def test_numbers_and_flags_are_stored_as_stable_strings():
    assert value_strings(pd.Series([3.0, 0.25, None, 1e-7, -2.0])).tolist() == [
        "3",
        "0.25",
        None,
        "0.0000001",
        "-2",
    ]
    assert value_strings(pd.Series([True, False])).tolist() == ["true", "false"]
    assert value_strings(pd.Series(["a", None], dtype=object)).tolist() == ["a", None]
    assert value_strings(pd.Series([True, None, 2, "x"], dtype=object)).tolist() == ["true", None, "2", "x"]


def test_a_rolled_back_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        store.apply(
            conn,
            tags=pd.DataFrame({"customer_id": ["P1"], "vip": [True]}),
            produced_by=PRODUCED,
            inputs=None,
            at=T0,
        )
        raise RuntimeError("the outbox write failed")
    assert _rows(store, tag_current) == [] and _rows(store, tag_history) == []


def test_bad_batches_are_refused_with_the_customer(store):
    with pytest.raises(ValidationFailed, match="customer P1 appears more than once"):
        _apply(store, {"customer_id": ["P1", "P1"], "vip": [True, False]})
    with pytest.raises(ValidationFailed, match="produced_by has no entry for tag\\(s\\) other"):
        _apply(store, {"customer_id": ["P1"], "other": ["x"]})
    with pytest.raises(ValidationFailed, match="needs a 'customer_id' column"):
        _apply(store, {"id": ["P1"], "vip": [True]})


def test_mapping_inputs_and_default_crm_field(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    plain = TagStore(engine)
    plain.create_schema()
    with engine.begin() as conn:
        changes = plain.apply(
            conn,
            tags={"P1": {"vip": True}},
            produced_by={"vip": "rule:vip@v1"},
            inputs={"P1": {"monetary_365d": 10.5}},
            at=T0,
        )
    assert changes[0].crm_field == "vip" and changes[0].inputs == {"monetary_365d": 10.5}
    assert plain.counts() == {"current": 1, "history": 1}


def test_customers_missing_from_inputs_or_batch(store, monkeypatch):
    monkeypatch.setattr(ts, "_SMALL_BATCH", 1)  # the grouped whole-tag read
    _apply(store, {"customer_id": ["P9"], "vip": [True]}, at=T0)
    inputs = pd.DataFrame({"customer_id": ["P1", "P1"], "monetary_365d": [1.0, 7.0], "recency_days": [5, 6]})
    changes = _apply(store, {"customer_id": ["P1", "P2"], "vip": [True, False]}, inputs, at=T1)
    # P9 (stored, not in this batch) is left alone; P2 has no inputs row: nulls; P1's last row wins
    assert {c.customer_id: c.inputs for c in changes} == {
        "P1": {"monetary_365d": 7.0, "recency_days": 6},
        "P2": {"monetary_365d": None, "recency_days": None},
    }
    assert store.current("P9")[0].value == "true"


def test_history_keeps_the_data_clock_and_old_stores_gain_the_column(tmp_path):
    data_day = datetime(2024, 6, 30, tzinfo=UTC)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    with engine.begin() as conn:  # a store written before tag_history.as_of existed
        conn.execute(
            sa.text(
                "CREATE TABLE tag_history (id INTEGER PRIMARY KEY, customer_id VARCHAR(64), tag VARCHAR(128), "
                "old_value TEXT, new_value TEXT, changed_at DATETIME, produced_by VARCHAR(256), inputs TEXT)"
            )
        )
    store = TagStore(engine)
    store.create_schema()
    with store.engine.begin() as conn:
        store.apply(
            conn,
            tags=pd.DataFrame({"customer_id": ["P1"], "vip": ["yes"]}),
            produced_by=PRODUCED,
            at=T0,
            as_of=data_day,
        )
        store.apply(
            conn, tags=pd.DataFrame({"customer_id": ["P1"], "vip": ["no"]}), produced_by=PRODUCED, at=T1
        )
    rows = _rows(store, tag_history)
    assert [r.as_of.date() if r.as_of else None for r in rows] == [data_day.date(), None]
    assert [r.changed_at.date() for r in rows] == [T0.date(), T1.date()]


def test_large_batches_read_only_their_own_customers(store, monkeypatch):
    # `score --all` applies chunk after chunk: a chunk must not read the stored values of every customer
    # of earlier chunks (that made a run grow with chunks x stored rows)
    _apply(store, {"customer_id": [f"E{i}" for i in range(600)], "churn_risk": ["low"] * 600}, at=T0)
    _apply(store, {"customer_id": ["P1", "P2"], "churn_risk": ["high", "low"]}, at=T0)
    monkeypatch.setattr(ts, "_SMALL_BATCH", 1)  # the grouped read of large batches
    monkeypatch.setattr(ts, "_CHUNK", 2)  # several chunks of ids
    read: list[str] = []
    fetch = ts.fetch_all

    def spy(conn, sql, params):
        rows = fetch(conn, sql, params)
        read.extend(i for _, joined in rows for i in joined.split(ts._SEP))
        return rows

    monkeypatch.setattr(ts, "fetch_all", spy)
    batch = {"customer_id": ["P1", "P2", "P3"], "churn_risk": ["high", "medium", "low"]}
    changes = _apply(store, batch, at=T1)
    assert sorted(read) == ["P1", "P2"]
    assert [(c.customer_id, c.old_value, c.new_value) for c in changes] == [
        ("P2", "low", "medium"),
        ("P3", None, "low"),
    ]
    assert {c.value for c in (store.current("E0") + store.current("E599"))} == {"low"}

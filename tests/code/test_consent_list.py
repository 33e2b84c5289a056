"""The consent list (features/consent.py): sources, the CRM sync, enforcement marks, the audit hash."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from core.statedb import make_state_engine
from features import consent


def _engine(tmp_path: Path) -> sa.Engine:
    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    consent.create_schema(engine)
    return engine


def test_cli_withdrawals_outlive_the_crm_sync(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    assert consent.sync_from_crm(engine, {"A", "B"}) == (2, 0)
    with engine.begin() as conn:
        assert consent.withdraw(conn, ["B", "C"], source=consent.CLI, actor="t") == ["C"]
    # the CRM now says A consents again and forgets about B: A leaves, B (taken over by the CLI) stays
    assert consent.sync_from_crm(engine, set()) == (0, 1)
    assert consent.withdrawn_ids(engine) == {"B", "C"}
    assert consent.withdrawn_ids(engine, sources=(consent.CRM,)) == set()


def test_version_moves_and_enforcement_is_marked(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    first = consent.version(engine)
    with engine.begin() as conn:
        consent.withdraw(conn, ["A"], source=consent.CLI, actor="t")
    assert consent.version(engine) != first
    assert consent.unenforced(engine) == ["A"]
    with engine.begin() as conn:
        consent.mark_enforced(conn, ["A"])
    assert consent.unenforced(engine) == []


def test_audit_holds_a_salted_hash_not_the_id(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.begin() as conn:
        digest = consent.record_audit(
            conn, customer_id="P0123456789ab", salt="s" * 16, action="forget", actor="t", erased={"rows": 3}
        )
    assert digest == consent.subject_hash("P0123456789ab", salt="s" * 16)
    assert digest != consent.subject_hash("P0123456789ab", salt="t" * 16)
    (record,) = consent.audit_records(engine)
    assert record.erased == {"rows": 3} and "P0123456789ab" not in repr(record)

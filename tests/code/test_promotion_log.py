"""The promotion history table: appended in order, and the database refuses to change or delete it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from training.promotions import PromotionLog


def test_history_is_append_only(tmp_path) -> None:
    log = PromotionLog(sa.create_engine(f"sqlite:///{tmp_path / 'state.sqlite'}"))
    log.append(
        event="gate",
        kind="churn",
        model="persona-churn",
        from_version=None,
        to_version="1",
        decision="promote",
        reason="first model",
        metrics={"pr_auc": 0.4},
    )
    log.append(
        event="promote",
        kind="churn",
        model="persona-churn",
        from_version=None,
        to_version="1",
        reason="first model",
        actor="gate (ci@box)",
    )
    log.append(
        event="force",
        kind="segments",
        model="persona-segments",
        from_version="1",
        to_version="2",
        reason="ops",
    )
    assert [e.event for e in log.read()] == ["gate", "promote", "force"]
    assert [e.event for e in log.read("churn")] == ["gate", "promote"]
    assert log.read("churn")[0].metrics == {"pr_auc": 0.4} and log.read("churn")[1].actor == "gate (ci@box)"
    with log.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.exec_driver_sql("UPDATE promotion_history SET reason = 'rewritten'")
    with log.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.exec_driver_sql("DELETE FROM promotion_history")
    assert len(log.read()) == 3
    with pytest.raises(ValueError, match="unknown promotion event"):
        log.append(event="edit", kind="churn", model="m", from_version=None, to_version=None, reason="")

"""`persona crm sync | replay | status` against the fake HubSpot, including a dispatcher killed with
SIGKILL mid-batch and restarted: no change lost, none applied twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from persona.cli import main
from serving.changes import TagChange
from serving.outbox import Outbox, make_state_engine
from tests.fakes.hubspot import FakeHubSpot

TOKEN = "cli-token"
ROOT = Path(__file__).resolve().parents[2]


def change(customer: str, value: str) -> TagChange:
    return TagChange(
        customer_id=customer,
        tag="segment",
        crm_field="persona_segment",
        old_value=None,
        new_value=value,
        changed_at=datetime(2026, 1, 5, tzinfo=UTC),
        produced_by="model:persona-segments@2",
    )


def env_for(data_dir: Path, fake: FakeHubSpot) -> dict[str, str]:
    return {
        "PERSONA_DATA_DIR": str(data_dir),
        "PERSONA_CRM__CONNECTOR": "http",
        "PERSONA_CRM__URL": fake.url,
        "PERSONA_CRM__TOKEN": TOKEN,
        "PERSONA_CRM__ID_PROPERTY": "persona_customer_id",
        "PERSONA_CRM__LEASE_SECONDS": "2",
        "PERSONA_CRM__BASE_DELAY_SECONDS": "0.05",
        "PERSONA_CRM__MAX_DELAY_SECONDS": "0.5",
    }


def fill_outbox(data_dir: Path, changes: list[TagChange]) -> Outbox:
    box = Outbox(make_state_engine(f"sqlite:///{data_dir.resolve()}/state/persona.sqlite"))
    box.create_schema()
    with box.engine.begin() as conn:
        box.enqueue(conn, changes)
    return box


@pytest.fixture
def hubspot():
    with FakeHubSpot(token=TOKEN) as fake:
        yield fake


def test_sync_status_replay(
    hubspot: FakeHubSpot, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in env_for(data_dir, hubspot).items():
        monkeypatch.setenv(key, value)
    box = fill_outbox(data_dir, [change(f"P{i}", "bargain_hunter") for i in range(5)])
    hubspot.set_faults(reject=lambda item: "INVALID_OPTION: persona_segment" if item["id"] == "P2" else None)

    assert main(["crm", "sync"]) == 0
    out = capsys.readouterr().out
    assert "delivered 4, retried 0, dead-lettered 1" in out
    assert "outbox: 0 pending, 4 delivered, 1 dead" in out

    assert main(["crm", "status"]) == 0
    out = capsys.readouterr().out
    assert "0 pending, 4 delivered, 1 dead, 0 superseded" in out
    assert "customer P2 tag segment='bargain_hunter'" in out and "INVALID_OPTION" in out
    assert TOKEN not in out

    hubspot.set_faults(reject=None)
    assert main(["crm", "replay"]) == 0
    out = capsys.readouterr().out
    assert "re-queued 1 dead letter(s)" in out and "delivered 1," in out
    assert box.counts() == {"pending": 0, "delivered": 5, "dead": 0, "superseded": 0, "unmatched": 0}
    assert hubspot.property_of("P2", "persona_segment") == "bargain_hunter"
    assert len(hubspot.applied) == 5


def test_misconfigured_connector_is_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PERSONA_CRM__CONNECTOR", "http")
    monkeypatch.setenv("PERSONA_CRM__URL", "sqlite:///x.db")
    assert main(["crm", "sync"]) == 2
    assert "error: crm.url: 'sqlite:///x.db' is not an http(s) URL" in capsys.readouterr().err


@pytest.mark.slow
def test_sync_killed_mid_batch_then_restarted_loses_nothing_and_duplicates_nothing(
    hubspot: FakeHubSpot, data_dir: Path
) -> None:
    n = 1_500
    changes = [change(f"P{i:05d}", ["loyal", "at_risk", "new"][i % 3]) for i in range(n)]
    box = fill_outbox(data_dir, changes)
    env = {**os.environ, **env_for(data_dir, hubspot)}
    persona = [sys.executable, "-m", "persona", "crm", "sync"]
    hubspot.set_faults(delay=0.5)  # a slow CRM: each batch of 100 is in flight for 0.5 s
    proc = subprocess.Popen(persona, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        give_up = time.monotonic() + 120
        while hubspot.state.requests < 4 and time.monotonic() < give_up and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)  # inside the next request
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    counts = box.counts()
    assert 0 < counts["pending"] < n, counts  # killed part-way
    time.sleep(0.8)  # the request in flight when it died is applied by the CRM nonetheless
    applied_before_restart = len(hubspot.applied)
    assert applied_before_restart > counts["delivered"]  # a batch applied but never acknowledged

    hubspot.set_faults(delay=0.0)
    again = subprocess.run(persona, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert box.counts() == {"pending": 0, "delivered": n, "dead": 0, "superseded": 0, "unmatched": 0}
    applied = hubspot.applied
    assert len(applied) == n
    assert Counter(applied) == Counter((c.customer_id, c.crm_field, c.new_value) for c in changes)
    assert max(hubspot.state.received.values()) == 2  # the unacknowledged batch was sent again


def write_identity_map(path: Path, keys: dict[str, str | None]) -> None:
    """An identity map of one order per customer: customer id -> the CRM record key (None: none yet)."""
    import pandas as pd

    pd.DataFrame(
        {
            "source": ["orders"] * len(keys),
            "source_record_id": [f"O{c}" for c in keys],
            "source_key": list(keys.values()),
            "customer_id": list(keys),
            "match_rule": ["new"] * len(keys),
        }
    ).to_parquet(path)


def test_customers_without_a_record_key_wait_as_unmatched_then_go_out(
    hubspot: FakeHubSpot, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    for key, value in env_for(data_dir, hubspot).items():
        monkeypatch.setenv(key, value)
    (data_dir / "clean").mkdir()
    identity = data_dir / "clean" / "identity_map.parquet"

    def write_map(keys: dict[str, str | None]) -> None:
        write_identity_map(identity, keys)

    write_map({"P1": "K-1", "P2": None})  # P2: an email-only customer, no key the CRM knows
    fill_outbox(data_dir, [change("P1", "loyal"), change("P2", "loyal")])
    assert main(["crm", "sync"]) == 0
    out = capsys.readouterr().out
    assert "delivered 1, retried 0, dead-lettered 0" in out and "0 dead, 1 unmatched" in out, out

    assert main(["crm", "status"]) == 0
    out = capsys.readouterr().out
    assert "0 pending, 1 delivered, 0 dead, 0 superseded, 1 unmatched" in out, out
    assert "unmatched: 1 change(s) of 1 customer(s) with no CRM record key yet" in out
    assert "dead #" not in out

    write_map({"P1": "K-1", "P2": "K-2"})  # a later ingest found P2's customer number
    os.utime(identity, (time.time() + 5, time.time() + 5))
    assert main(["crm", "sync"]) == 0
    out = capsys.readouterr().out
    assert "released 1 parked change(s)" in out and "delivered 1," in out, out
    assert hubspot.property_of("K-2", "persona_segment") == "loyal"
    assert main(["crm", "status"]) == 0
    assert "0 pending, 2 delivered, 0 dead, 0 superseded, 0 unmatched" in capsys.readouterr().out


def test_parked_list_memberships_go_out_with_crm_sync_segments(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Segment lists (embedded SQL CRM): a member with no CRM record key waits as unmatched; `persona crm
    sync --segments` releases and delivers it once an ingest gives the customer a key."""
    import sqlalchemy as sa

    from serving.segments import list_members, segment_outbox

    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    (data_dir / "clean").mkdir()
    (data_dir / "raw").mkdir()
    identity = data_dir / "clean" / "identity_map.parquet"

    def write_map(keys: dict[str, str | None]) -> None:
        write_identity_map(identity, keys)

    write_map({"P1": "K-1", "P2": None})
    box = segment_outbox(make_state_engine(f"sqlite:///{data_dir.resolve()}/state/persona.sqlite"))
    joins = [
        TagChange(
            customer_id=customer,
            tag="at_risk",
            crm_field="At risk",
            old_value=None,
            new_value="member",
            changed_at=datetime(2026, 1, 5, tzinfo=UTC),
            produced_by="segment:at_risk",
        )  # fmt: skip
        for customer in ("P1", "P2")
    ]
    with box.engine.begin() as conn:
        box.enqueue(conn, joins)
    assert main(["crm", "sync", "--segments"]) == 0
    out = capsys.readouterr().out
    assert "delivered 1," in out and "0 dead, 1 unmatched" in out, out

    write_map({"P1": "K-1", "P2": "K-2"})  # a later ingest found P2's customer number
    os.utime(identity, (time.time() + 5, time.time() + 5))
    assert main(["crm", "sync", "--segments"]) == 0
    out = capsys.readouterr().out
    assert "released 1 parked change(s)" in out and "delivered 1," in out and "0 unmatched" in out, out
    crm = sa.create_engine(f"sqlite:///{data_dir.resolve()}/raw/crm.sqlite")
    with crm.connect() as conn:
        rows = conn.execute(sa.select(list_members.c.contact_id, list_members.c.member)).all()
    assert sorted(rows) == [("K-1", True), ("K-2", True)]
    assert main(["crm", "sync", "--segments", "--triggers"]) == 2

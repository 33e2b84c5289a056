"""Dispatcher: back-off with jitter, Retry-After, batch splitting, dead letters, leases. The clock and
sleep are injected, so nothing here waits for real time."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.changes import TagChange
from serving.connectors.base import BatchRejected, Connector, RateLimited, SendResult, TransientCrmError
from serving.dispatcher import Dispatcher, backoff_delay
from serving.outbox import Outbox, OutboxEntry, make_state_engine


class FakeClock:
    """`clock()` returns the time; `sleep(s)` records the wait and moves the time on."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedCrm(Connector):
    """Applies keys into a Counter; `script` holds exceptions to raise on the next calls; customers in
    `bad` make a whole batch fail with 400 (BatchRejected), as HubSpot does without multi-status."""

    name = "scripted"

    def __init__(self, *, max_batch: int = 100, clock: FakeClock | None = None) -> None:
        self.max_batch = max_batch
        self.applied: Counter[str] = Counter()
        self.script: list[Exception | None] = []  # None: this call succeeds
        self.bad: set[str] = set()
        self.calls: list[tuple[float, int]] = []  # (time, batch size)
        self.clock = clock

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        self.calls.append((self.clock() if self.clock else 0.0, len(entries)))
        if self.script and (fault := self.script.pop(0)) is not None:
            raise fault
        bad = [e.change.customer_id for e in entries if e.change.customer_id in self.bad]
        if bad:
            raise BatchRejected(f"400 VALIDATION_ERROR: Property values were not valid for {bad[0]}")
        for entry in entries:
            self.applied[entry.change.idempotency_key] += 1
        return SendResult()


def change(customer: str, value: str = "high") -> TagChange:
    return TagChange(
        customer_id=customer,
        tag="churn_risk",
        crm_field="persona_churn_risk",
        old_value=None,
        new_value=value,
        changed_at=datetime(2026, 1, 5, tzinfo=UTC),
        produced_by="model:persona-churn@3",
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(make_state_engine(f"sqlite:///{tmp_path}/persona.sqlite"))
    box.create_schema()
    return box


def fill(box: Outbox, n: int, now: float = 1_000.0) -> list[TagChange]:
    changes = [change(f"P{i:05d}") for i in range(n)]
    with box.engine.begin() as conn:
        box.enqueue(conn, changes, now=now)
    return changes


def make(box: Outbox, crm: ScriptedCrm, clock: FakeClock, **kw: object) -> Dispatcher:
    options: dict[str, object] = {
        "batch_size": 100,
        "give_up_after": 86400.0,
        "base_delay": 1.0,
        "max_delay": 60.0,
        "lease_seconds": 30.0,
    }
    options.update(kw)
    return Dispatcher(box, crm, clock=clock, sleep=clock.sleep, rng=random.Random(7), **options)  # type: ignore[arg-type]


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 60.0), (30, 60.0)]:
        for _ in range(50):
            delay = backoff_delay(attempt, base_delay=1.0, max_delay=60.0, rng=rng)
            assert cap / 2 <= delay <= cap
    # jitter: retries of many entries do not line up
    draws = {round(backoff_delay(3, base_delay=1.0, max_delay=60.0, rng=rng), 6) for _ in range(20)}
    assert len(draws) == 20


def test_delivers_everything_in_batches(outbox: Outbox) -> None:
    clock = FakeClock()
    changes = fill(outbox, 250)
    crm = ScriptedCrm(max_batch=100)
    stats = make(outbox, crm, clock).run_until_empty()
    assert stats.delivered == 250 and stats.dead == 0
    assert [size for _, size in crm.calls] == [100, 100, 50]
    assert crm.applied == Counter({c.idempotency_key: 1 for c in changes})
    assert outbox.counts()["delivered"] == 250


def test_transient_failures_back_off_then_deliver(outbox: Outbox) -> None:
    clock = FakeClock()
    fill(outbox, 10)
    crm = ScriptedCrm(clock=clock)
    crm.script = [TransientCrmError("503"), TransientCrmError("503"), TransientCrmError("timed out")]
    stats = make(outbox, crm, clock).run_until_empty()
    assert stats.delivered == 10 and stats.retried == 30 and stats.dead == 0
    times = [t for t, _ in crm.calls]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # attempt n waits within [2^(n-1)/2, 2^(n-1)] seconds of base 1.0
    for n, gap in enumerate(gaps, start=1):
        assert 2 ** (n - 1) / 2 <= gap <= 2 ** (n - 1), (n, gap)
    assert sum(crm.applied.values()) == 10


def test_retry_after_is_honoured_on_429_and_spends_no_attempt(outbox: Outbox) -> None:
    clock = FakeClock()
    fill(outbox, 150)
    crm = ScriptedCrm(clock=clock, max_batch=50)
    crm.script = [RateLimited("429 RATE_LIMIT", retry_after=7.0), RateLimited("429", retry_after=3.0)]
    dispatcher = make(outbox, crm, clock, batch_size=150, give_up_after=1.0)
    stats = dispatcher.run_until_empty()
    assert stats.rate_limited == 2 and stats.delivered == 150 and stats.dead == 0
    times = [t for t, _ in crm.calls]
    # the 429 at t=1000 pauses every send for 7 s; the next 429 for 3 s more
    assert times[:3] == [1000.0, 1007.0, 1010.0]
    assert clock.sleeps == [7.0, 3.0]


def test_retry_after_on_5xx_is_a_lower_bound(outbox: Outbox) -> None:
    clock = FakeClock()
    fill(outbox, 1)
    crm = ScriptedCrm(clock=clock)
    crm.script = [TransientCrmError("503 maintenance", retry_after=120.0)]
    make(outbox, crm, clock).run_until_empty()
    assert [t for t, _ in crm.calls] == [1000.0, 1120.0]


def test_batch_split_isolates_the_bad_record(outbox: Outbox) -> None:
    clock = FakeClock()
    changes = fill(outbox, 100)
    crm = ScriptedCrm(clock=clock)
    crm.bad = {"P00042"}
    stats = make(outbox, crm, clock).run_until_empty()
    assert stats.delivered == 99 and stats.dead == 1
    # bisection: 1 + 2 + 2 + ... requests, far fewer than one per record
    assert stats.requests <= 1 + 2 * 7
    assert sum(crm.applied.values()) == 99
    assert crm.applied[changes[42].idempotency_key] == 0
    (dead,) = outbox.dead_letters()
    assert dead.customer_id == "P00042"
    assert "400 VALIDATION_ERROR" in dead.reason and "P00042" in dead.reason
    # the fault is cleared, the dead letter replayed: delivered once
    crm.bad.clear()
    assert outbox.replay(now=clock()) == 1
    again = make(outbox, crm, clock).run_until_empty()
    assert again.delivered == 1
    assert crm.applied[changes[42].idempotency_key] == 1
    assert outbox.counts() == {"pending": 0, "delivered": 100, "dead": 0, "superseded": 0, "unmatched": 0}


def test_retries_are_bounded_by_time_not_by_attempts(outbox: Outbox) -> None:
    clock = FakeClock()
    fill(outbox, 3)
    crm = ScriptedCrm(clock=clock)
    crm.script = [TransientCrmError(f"500 try {i}") for i in range(1, 20)]
    stats = make(outbox, crm, clock, give_up_after=5.0).run_until_empty()
    assert stats.dead == 3 and stats.delivered == 0
    times = [t for t, _ in crm.calls]
    # every failure before the bound was retried; the first one at or past it dead-lettered the entries
    assert times[-1] - 1000.0 >= 5.0 and all(t - 1000.0 < 5.0 for t in times[:-1]) and len(times) >= 3
    reasons = {d.reason for d in outbox.dead_letters()}
    assert reasons == {f"gave up retrying (crm.give_up_after): 500 try {len(times)}"}


def test_an_outage_of_hours_opens_the_circuit_sleeps_and_loses_nothing(outbox: Outbox) -> None:
    """The CRM refuses connections for 7 minutes (simulated clock) while 1,000 changes wait: the
    breaker sends one probe at a time, further and further apart (capped), sleeps in between, spends
    no attempt on what it did not send, and everything lands once the CRM is back: 0 dead letters."""
    clock = FakeClock()
    changes = fill(outbox, 1000)
    outage_ends = clock() + 7 * 60

    class Down(ScriptedCrm):
        def send(self, entries: list[OutboxEntry]) -> SendResult:
            if self.clock() < outage_ends:
                self.calls.append((self.clock(), len(entries)))
                raise TransientCrmError("CRM unreachable (ConnectError: refused)", outage=True)
            return super().send(entries)

    crm = Down(clock=clock)
    stats = make(outbox, crm, clock, batch_size=300, max_delay=300.0).run_until_empty()
    assert stats.delivered == 1000 and stats.dead == 0
    assert crm.applied == Counter({c.idempotency_key: 1 for c in changes})
    failed = [t for t, _ in crm.calls if t < outage_ends]
    # a probe per back-off step (1, 2, 4, ... s, jittered, capped at 300 s): about a dozen, not thousands
    assert 5 <= len(failed) <= 15
    gaps = [b - a for a, b in zip(failed, failed[1:], strict=False)]
    assert all(later >= earlier / 2 for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert max(gaps) <= 300.0
    # the dispatcher slept through the outage: sleeps cover it, with about one sleep per probe
    assert sum(clock.sleeps) >= 7 * 60 - 1 and len(clock.sleeps) <= len(failed) + 12
    # only the probes spent attempts
    with outbox.engine.connect() as conn:
        attempts = sorted(r[0] for r in conn.exec_driver_sql("SELECT attempts FROM crm_outbox"))
    assert sum(attempts) <= 100 * len(failed)


def test_an_outage_past_give_up_after_dead_letters(outbox: Outbox) -> None:
    clock = FakeClock()
    fill(outbox, 10)
    crm = ScriptedCrm(clock=clock)
    crm.script = [TransientCrmError("refused", outage=True) for _ in range(40)]
    stats = make(outbox, crm, clock, give_up_after=600.0, max_delay=60.0).run_until_empty()
    assert stats.dead == 10 and stats.delivered == 0
    assert 600.0 <= clock.now - 1000.0 <= 600.0 + 60.0


def test_500_on_one_request_of_a_split_batch_retries_only_that_request(outbox: Outbox) -> None:
    clock = FakeClock()
    changes = fill(outbox, 300)
    crm = ScriptedCrm(clock=clock, max_batch=100)
    crm.script = [None, TransientCrmError("500 internal error")]
    stats = make(outbox, crm, clock, batch_size=300).run_until_empty()
    assert stats.delivered == 300 and stats.retried == 100 and stats.dead == 0
    assert [size for _, size in crm.calls] == [100, 100, 100, 100]
    assert crm.applied == Counter({c.idempotency_key: 1 for c in changes})


def test_killed_dispatcher_claims_are_redelivered_after_the_lease(outbox: Outbox) -> None:
    clock = FakeClock()
    changes = fill(outbox, 10)
    # a dispatcher claims a batch and dies before settling it
    claimed, _ = outbox.claim(limit=10, now=clock(), lease_seconds=30.0)
    assert len(claimed) == 10
    crm = ScriptedCrm(clock=clock)
    stats = make(outbox, crm, clock, lease_seconds=30.0).run_until_empty()
    assert stats.delivered == 10
    assert crm.calls[0][0] == 1030.0  # not before the lease ran out
    assert crm.applied == Counter({c.idempotency_key: 1 for c in changes})


def test_deadline_stops_waiting_and_keeps_entries(outbox: Outbox) -> None:
    clock = FakeClock()
    fill(outbox, 5)
    crm = ScriptedCrm(clock=clock)
    crm.script = [TransientCrmError("503", retry_after=500.0)]
    stats = make(outbox, crm, clock).run_until_empty(deadline=clock() + 60)
    assert stats.delivered == 0 and stats.retried == 5
    assert outbox.counts()["pending"] == 5 and clock.now < 1060.0


def test_run_forever_delivers_and_stops_on_event(outbox: Outbox) -> None:
    fill(outbox, 30)
    crm = ScriptedCrm()
    dispatcher = Dispatcher(outbox, crm, batch_size=10, rng=random.Random(1))
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), kwargs={"poll_seconds": 0.05})
    thread.start()
    try:
        for _ in range(200):
            if outbox.counts()["delivered"] == 30:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert outbox.counts()["delivered"] == 30 and sum(crm.applied.values()) == 30


def test_running_dispatcher_releases_unmatched_when_a_key_appears(outbox: Outbox, tmp_path: Path) -> None:
    """The service's loop: a customer with no CRM record key waits as `unmatched`; once an ingest gives
    it one (the identity map is rewritten), the running loop releases and delivers it, exactly once."""
    import os
    import time

    import pandas as pd
    import sqlalchemy as sa

    from serving.connectors.sql import SqlConnector, tags_table
    from serving.record_keys import RecordKeys

    identity = tmp_path / "identity_map.parquet"
    keys = pd.DataFrame(
        {
            "source": ["orders", "orders"],
            "source_record_id": ["O1", "O2"],
            "source_key": ["K-1", None],  # P2 bought under an email only: no customer number yet
            "customer_id": ["P1", "P2"],
        }
    )
    keys.to_parquet(identity)
    crm = sa.create_engine(f"sqlite:///{tmp_path}/crm.sqlite")
    sent: Counter[str] = Counter()

    class Counting(SqlConnector):
        def send(self, entries: list[OutboxEntry]) -> SendResult:
            result = super().send(entries)
            sent.update(e.change.customer_id for e in entries if e.id not in result.unmatched)
            return result

    connector = Counting(crm, resolver=RecordKeys(identity, record_key="orders"))
    with outbox.engine.begin() as conn:
        outbox.enqueue(conn, [change("P1"), change("P2")], now=time.time())
    dispatcher = Dispatcher(outbox, connector, batch_size=10, rng=random.Random(1))
    stop = threading.Event()
    thread = threading.Thread(
        target=dispatcher.run_forever, args=(stop,), kwargs={"poll_seconds": 0.02, "release_seconds": 0.05}
    )

    def wait_for(status: str, count: int) -> None:
        for _ in range(200):
            if outbox.counts()[status] == count:
                return
            stop.wait(0.05)
        raise AssertionError(f"{status} never reached {count}: {outbox.counts()}")

    thread.start()
    try:
        wait_for("unmatched", 1)
        assert outbox.counts()["delivered"] == 1 and sent == Counter({"P1": 1})
        stop.wait(0.3)  # several release looks while P2 still has no key: it stays parked
        assert outbox.counts()["unmatched"] == 1 and sent["P2"] == 0
        keys.loc[keys["customer_id"] == "P2", "source_key"] = "K-2"  # a later ingest: a customer number
        keys.to_parquet(identity)
        os.utime(identity, (time.time() + 5, time.time() + 5))  # a new map, even within one mtime tick
        wait_for("delivered", 2)
        stop.wait(0.3)  # more looks and rounds: nothing is sent again
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert sent == Counter({"P1": 1, "P2": 1})
    assert outbox.counts()["unmatched"] == 0 and outbox.dead_letters() == []
    with crm.connect() as conn:
        rows = conn.execute(sa.select(tags_table.c.customer_id, tags_table.c.contact_id)).all()
    assert sorted(rows) == [("P1", "K-1"), ("P2", "K-2")]


def test_the_service_keeps_every_configured_outbox_delivering(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """CRM tags always; the trigger and segment-list outboxes only with rules, each its own table."""
    import sqlalchemy as sa
    import yaml

    from configs.settings import load_settings
    from serving.dispatcher import service_dispatchers
    from serving.segments import segment_outbox_table
    from serving.triggers import trigger_outbox_table

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    (tmp_path / "raw").mkdir()
    sa.create_engine(f"sqlite:///{tmp_path}/raw/crm.sqlite").connect().close()  # the embedded SQL CRM
    assert [name for name, _ in service_dispatchers(load_settings())] == ["crm"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\ntriggers:\n", 1)[1].split("```", 1)[0]
    example = yaml.safe_load("triggers:\n" + block)
    assert example.get("segments", {}).get("sync"), "the README example syncs a segment"
    found = dict(service_dispatchers(load_settings(**example)))
    assert list(found) == ["crm", "triggers", "segments"]
    assert found["triggers"].outbox.table is trigger_outbox_table
    assert found["segments"].outbox.table is segment_outbox_table

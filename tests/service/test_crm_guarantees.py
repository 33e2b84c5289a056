"""Delivery guarantees against the HubSpot-contract fake (tests/fakes/hubspot.py) and a real PostgreSQL
CRM: an outage of minutes loses nothing, a failed request of a split batch is the only one re-sent, a
flip back lands, a replay does not, and a SIGKILL at a random point re-sends at most the request that
was in flight. The intended final state is computed independently from the changes queued."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.changes import TagChange
from serving.connectors.http import HttpConnector, retry_after_seconds
from serving.connectors.sql import SqlConnector
from serving.dispatcher import Dispatcher
from serving.outbox import Outbox, make_state_engine
from serving.record_keys import RecordKeys
from tests.fakes.hubspot import FakeHubSpot
from tests.service.conftest import new_database

TOKEN = "test-token"
PROJECT = Path(__file__).resolve().parents[2]
VALUES = ("low", "medium", "high")


class FakeClock:
    """Dispatcher time; `on_sleep` lets a test change the world while the dispatcher sleeps."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep = lambda now: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(self.now)


def change(customer: str, value: str, *, tag: str = "churn_risk") -> TagChange:
    return TagChange(
        customer_id=customer,
        tag=tag,
        crm_field=f"persona_{tag}",
        old_value=None,
        new_value=value,
        changed_at=datetime(2026, 1, 5, tzinfo=UTC),
        produced_by="model:persona-churn@3",
    )


def enqueue(box: Outbox, changes: list[TagChange], now: float = 1_000.0) -> None:
    with box.engine.begin() as conn:
        box.enqueue(conn, changes, now=now)


def connector(fake: FakeHubSpot, timeout: float = 5.0) -> HttpConnector:
    return HttpConnector(
        fake.url,
        token=TOKEN,
        id_property="persona_customer_id",
        resolver=RecordKeys(None),
        timeout=timeout,
    )


def dispatcher(box: Outbox, conn, clock: FakeClock, **kw) -> Dispatcher:  # noqa: ANN001
    options = {"batch_size": 300, "give_up_after": 86400.0, "base_delay": 1.0, "max_delay": 300.0}
    options.update(kw)
    return Dispatcher(box, conn, clock=clock, sleep=clock.sleep, rng=random.Random(3), **options)


def re_applied(fake: FakeHubSpot) -> list[int]:
    """Indexes of applied requests that carried an input (trace id) an earlier request had applied."""
    seen: set[str] = set()
    again = []
    for index, traces in enumerate(fake.state.batches):
        if seen & set(traces):
            again.append(index)
        seen.update(traces)
    return again


@pytest.fixture
def hubspot():
    with FakeHubSpot(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(make_state_engine(f"sqlite:///{tmp_path}/persona.sqlite"))
    box.create_schema()
    return box


# ------------------------------------------------------------------------------- Retry-After forms
def test_retry_after_as_seconds_and_as_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0  # past: now
    assert retry_after_seconds("soon", now=now) is None and retry_after_seconds(None) is None


def test_429_with_an_http_date_pauses_until_that_date(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high")])
    clock = FakeClock()
    when = format_datetime(datetime.fromtimestamp(time.time() + 6, tz=UTC), usegmt=True)
    hubspot.set_faults(rate_limit_next=1, retry_after=when, rate_limit_interval_ms=100)
    stats = dispatcher(outbox, connector(hubspot), clock).run_until_empty()
    assert stats.rate_limited == 1 and stats.delivered == 1
    assert 4.0 <= clock.sleeps[0] <= 6.0  # the date, not the 0.1 s interval nor a default


# ------------------------------------------------------------------------------- a 7-minute outage
def test_seven_minutes_of_refused_connections_dead_letter_nothing(
    hubspot: FakeHubSpot, outbox: Outbox
) -> None:
    """The CRM's port is closed for 7 minutes of the dispatcher's (simulated) clock, then reopens."""
    n = 3_000
    changes = [change(f"P{i:05d}", VALUES[i % 3]) for i in range(n)]
    enqueue(outbox, changes)
    clock = FakeClock()
    back_at = clock() + 7 * 60
    hubspot.refuse_connections()
    clock.on_sleep = lambda now: hubspot.accept_connections() if now >= back_at else None
    stats = dispatcher(outbox, connector(hubspot), clock, batch_size=500).run_until_empty()
    assert outbox.counts() == {"pending": 0, "delivered": n, "dead": 0, "superseded": 0, "unmatched": 0}
    assert stats.dead == 0
    # while down: one refused probe per back-off step; nothing was sent more than once after
    probes = stats.requests - hubspot.state.requests
    assert 5 <= probes <= 15, probes
    assert len(hubspot.applied) == n and not re_applied(hubspot)
    assert all(hubspot.property_of(c.customer_id, c.crm_field) == c.new_value for c in changes)


# ------------------------------------------------------------------------ 500 on a split batch
@pytest.mark.parametrize("failing", [1, 2, 3])
def test_500_on_any_request_of_a_split_batch_resends_only_that_request(
    hubspot: FakeHubSpot, outbox: Outbox, failing: int
) -> None:
    n = 250  # one claim of 300 -> three requests of 100, 100, 50 records
    changes = [change(f"P{i:04d}", "high") for i in range(n)]
    enqueue(outbox, changes)
    hubspot.set_faults(fail_requests=frozenset({failing}), fail_status=500)
    stats = dispatcher(outbox, connector(hubspot), FakeClock()).run_until_empty()
    assert stats.delivered == n and stats.dead == 0 and hubspot.state.statuses[500] == 1
    sizes = [100, 100, 50]
    assert stats.retried == sizes[failing - 1]
    # four requests: the three of the batch and the failed one again (the others were not re-sent)
    assert hubspot.state.requests == 4 and sum(hubspot.state.received.values()) == n
    assert len(hubspot.applied) == n and not re_applied(hubspot)


# --------------------------------------------------------------------------- flips and replays
def test_flips_land_and_replays_do_not_overwrite(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    clock = FakeClock()
    run = dispatcher(outbox, connector(hubspot), clock)
    for value in ("low", "high", "low"):  # delivered between each: every flip goes out
        enqueue(outbox, [change("P1", value)], now=clock())
        run.run_until_empty()
        assert hubspot.property_of("P1", "persona_churn_risk") == value
    # flips queued together: only the latest value is sent
    for value in ("high", "medium", "low", "high"):
        enqueue(outbox, [change("P2", value)], now=clock())
    stats = run.run_until_empty()
    assert stats.superseded == 3 and hubspot.property_of("P2", "persona_churn_risk") == "high"
    # replaying every delivered change (an operator's mistake) supersedes the old ones: state unchanged
    with outbox.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE crm_outbox SET status = 'dead'")
    outbox.replay(now=clock())
    run.run_until_empty()
    assert hubspot.property_of("P1", "persona_churn_risk") == "low"
    assert hubspot.property_of("P2", "persona_churn_risk") == "high"


# ------------------------------------------------------------------------------------ SIGKILL
_WORKER = """
import random, sys, time
from serving.record_keys import RecordKeys
from serving.dispatcher import Dispatcher
from serving.outbox import Outbox, make_state_engine
kind, state_url, target = sys.argv[1:4]
box = Outbox(make_state_engine(state_url))
if kind == "http":
    from serving.connectors.http import HttpConnector
    crm = HttpConnector(target, token="test-token", id_property="persona_customer_id",
                        resolver=RecordKeys(None), timeout=5)
else:
    import sqlalchemy as sa
    from serving.connectors.sql import SqlConnector
    crm = SqlConnector(sa.create_engine(target), resolver=RecordKeys(None))
print("ready", flush=True)
Dispatcher(box, crm, batch_size=300, lease_seconds=1.0, base_delay=0.05, max_delay=0.2).run_until_empty()
print("done", flush=True)
"""


def _queue_world(box: Outbox, rng: random.Random, customers: int) -> dict[tuple[str, str], str]:
    """Changes in three waves, many customers flipping back (low -> high -> low); returns the intended
    final value per (customer, field)."""
    intended: dict[tuple[str, str], str] = {}
    for wave in range(3):
        changes = []
        for i in range(customers):
            if wave and rng.random() < 0.5:
                continue
            value = VALUES[(i + wave * (1 + (i % 2))) % 3]
            changes.append(change(f"P{i:04d}", value))
            intended[(f"P{i:04d}", "persona_churn_risk")] = value
        enqueue(box, changes, now=time.time())
    return intended


def _kill_run(kind: str, state_url: str, target: str, seed: int) -> bool:
    """Start a dispatcher process, SIGKILL it at a random point; True if it was killed mid-run."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, kind, state_url, target],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=PROJECT,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode == -signal.SIGKILL


SEEDS = [pytest.param(s, marks=[pytest.mark.slow] if s >= 2 else []) for s in range(20)]


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_a_random_point_resends_at_most_the_request_in_flight(
    hubspot: FakeHubSpot, outbox: Outbox, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    hubspot.set_faults(delay=0.04, fail_requests=frozenset({rng.randint(1, 6)}), fail_status=500)
    intended = _queue_world(outbox, rng, customers=900)
    assert _kill_run("http", f"sqlite:///{tmp_path}/persona.sqlite", hubspot.url, seed), "not killed mid-run"
    # the operator reruns `persona crm sync` (here in-process, its clock past the dead worker's lease)
    clock = FakeClock(time.time() + 5)
    dispatcher(outbox, connector(hubspot), clock).run_until_empty()
    assert outbox.counts()["pending"] == 0 and outbox.counts()["dead"] == 0
    final = {key: hubspot.property_of(*key) for key in intended}
    assert final == intended
    # applied twice: only inputs of one request, the one in flight when the worker died
    again = re_applied(hubspot)
    if again:
        first = set().union(*(set(hubspot.state.batches[i]) for i in again))
        earlier = [set(b) & first for b in hubspot.state.batches[: min(again)]]
        assert sum(1 for b in earlier if b) == 1, "inputs of more than one request were applied twice"


@pytest.mark.integration
@pytest.mark.parametrize("seed", [0, 1, pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_with_a_postgres_crm_never_applies_a_change_twice(
    postgres: str, outbox: Outbox, tmp_path: Path, seed: int
) -> None:
    crm_url = new_database(postgres)
    sql = SqlConnector(sa.create_engine(crm_url), resolver=RecordKeys(None))
    sql.create_schema()
    intended = _queue_world(outbox, random.Random(seed), customers=1500)
    _kill_run("sql", f"sqlite:///{tmp_path}/persona.sqlite", crm_url, seed)
    dispatcher(outbox, sql, FakeClock(time.time() + 5)).run_until_empty()
    assert outbox.counts()["pending"] == 0 and outbox.counts()["dead"] == 0
    with sa.create_engine(crm_url).connect() as conn:
        current = {
            (c, f): v
            for c, f, v in conn.execute(sa.text("SELECT customer_id, crm_field, value FROM persona_tags"))
        }
        applied = Counter(r for (r,) in conn.execute(sa.text("SELECT change_id FROM persona_tag_history")))
    assert current == intended
    assert applied and max(applied.values()) == 1  # transactional: not even the in-flight batch twice

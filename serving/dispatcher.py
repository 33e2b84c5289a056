"""Outbox dispatcher: claims due entries, sends them to the CRM connector, settles each one.

Delivery is at least once (a lease that expires returns a killed dispatcher's batch to the queue);
each claimed batch goes out as the connector's requests, one at a time, and each request's
acknowledgement is recorded before the next is sent, so after a failure or a kill only the request in
flight is sent again. Connectors apply a change only if its sequence is newer than the CRM's (sql), or
send only the latest value per (record, field) (http). Failures:
- the CRM is unreachable (connection refused, time-out, 502/503/504): a circuit breaker opens: nothing
  more is sent until a probe after a jittered exponential back-off (capped at `max_delay`), and the
  dispatcher sleeps meanwhile (no busy loop); the request that failed spends an attempt, the rest none;
- other transient failures (500): only that request goes back with exponential back-off and jitter;
- retries are bounded by time: an entry still failing `give_up_after` seconds after it was queued is
  dead-lettered with the last reason (`persona crm replay` re-sends);
- 429: every send pauses until Retry-After (seconds or an HTTP date) or the rate-limit interval;
  spends no attempt;
- the CRM refuses a batch as a whole (400): the batch is split in halves until the bad record is alone,
  which is dead-lettered with the CRM's reason; the good ones are delivered;
- per-record rejections (207): those entries are dead-lettered, the rest delivered;
- the customer has no CRM record key (an email- or phone-only customer): parked as `unmatched`, not dead;
  `run_until_empty` first releases those whose customer has a key by now, and the service's
  `run_forever` does so every RELEASE_UNMATCHED_SECONDS (a later ingest may give them one any time).
Time comes from an injected `clock` and `sleep` so tests run without waiting.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from core.errors import CrmError
from serving.connectors import make_connector
from serving.connectors.base import BatchRejected, Connector, RateLimited, TransientCrmError
from serving.outbox import Outbox, OutboxEntry, make_state_engine

OBSERVE_COUNTS_SECONDS = 10.0  # how often the service's loop reads the outbox counts for its gauges
# how often the service's loop looks for parked entries whose customer got a CRM record key: keys come
# with an ingest (hours apart), and each look reads the parked customers and asks the key resolver
RELEASE_UNMATCHED_SECONDS = 30.0

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from configs.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DispatchStats:
    """What one or more dispatch rounds did (entries, not requests, unless said)."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0  # went back to the queue after a transient failure
    dead: int = 0  # dead-lettered (rejected for good, or out of attempts)
    superseded: int = 0  # a newer value of the same tag was queued: not sent
    duplicates: int = 0  # the CRM had already applied the key (a re-delivery)
    requests: int = 0  # connector.send calls
    rate_limited: int = 0  # 429 answers
    unmatched: int = 0  # parked: the customer has no CRM record key yet
    released: int = 0  # parked entries back in the queue: their customer got a key

    def add(self, other: DispatchStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def backoff_delay(attempt: int, *, base_delay: float, max_delay: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, with "equal jitter"
    (half fixed, half random) so a fleet of retries does not hit a recovering CRM in lockstep."""
    cap = min(max_delay, base_delay * 2 ** max(0, attempt - 1))
    return cap / 2 + rng.uniform(0, cap / 2)


class _Paused(Exception):
    """Internal: a 429 or an open circuit stopped this round; `reason` is recorded on the entries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Dispatcher:
    """Delivers `outbox` entries through `connector` in batches of `batch_size`."""

    def __init__(
        self,
        outbox: Outbox,
        connector: Connector,
        *,
        batch_size: int = 100,
        give_up_after: float = 86400.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        lease_seconds: float = 60.0,
        poll_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.connector = connector
        self.batch_size = batch_size
        self.give_up_after = give_up_after
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.paused_until = 0.0  # rate limit or open circuit: nothing is sent before this time
        self.outage_failures = 0  # consecutive failed requests while the CRM is unreachable

    # -- one round -----------------------------------------------------------------------------
    def run_once(self) -> DispatchStats:
        """Claim one batch of due entries and settle every one of them."""
        stats = DispatchStats()
        now = self.clock()
        if now < self.paused_until:
            return stats
        entries, superseded = self.outbox.claim(
            limit=self.batch_size, now=now, lease_seconds=self.lease_seconds
        )
        stats.claimed = len(entries) + superseded
        stats.superseded = superseded
        requests = self.connector.split(entries) if entries else []
        for index, request in enumerate(requests):
            try:
                self._deliver(request, stats)
            except _Paused as paused:
                # not sent: back to the queue untouched, due when the pause or the open circuit ends
                rest = [e for later in requests[index + 1 :] for e in later]
                self.outbox.retry_later(
                    {e.id: self.paused_until for e in rest}, error=paused.reason, count_attempt=False
                )
                break
            except CrmError:
                # Not the records' fault (e.g. bad credentials): hand everything back untouched.
                rest = [e for later in requests[index:] for e in later]
                self.outbox.retry_later({e.id: now for e in rest}, error="not sent", count_attempt=False)
                raise
        return stats

    def _deliver(self, chunk: list[OutboxEntry], stats: DispatchStats) -> None:
        stats.requests += 1
        try:
            result = self.connector.send(chunk)
        except RateLimited as exc:
            stats.rate_limited += 1
            wait = exc.retry_after if exc.retry_after is not None else self._delay(1)
            self.paused_until = self.clock() + wait
            log.warning("CRM rate limit: pausing %.1fs (%s)", wait, exc.message)
            self.outbox.retry_later(
                {e.id: self.paused_until for e in chunk}, error=exc.message, count_attempt=False
            )
            raise _Paused("paused: CRM rate limit") from None
        except BatchRejected as exc:
            self.outage_failures = 0
            if len(chunk) == 1:
                self.outbox.dead_letter({chunk[0].id: exc.message})
                stats.dead += 1
                log.warning(
                    "dead-lettered outbox entry %d (customer %s): %s",
                    chunk[0].id,
                    chunk[0].change.customer_id,
                    exc.message,
                )
                return
            middle = len(chunk) // 2
            try:
                self._deliver(chunk[:middle], stats)
            except _Paused as paused:
                self.outbox.retry_later(
                    {e.id: self.paused_until for e in chunk[middle:]},
                    error=paused.reason,
                    count_attempt=False,
                )
                raise
            self._deliver(chunk[middle:], stats)
            return
        except TransientCrmError as exc:
            if exc.outage:
                self._open_circuit(chunk, exc, stats)
                raise _Paused("not sent: circuit open (CRM unreachable)") from None
            self._retry(chunk, exc.message, exc.retry_after, stats)
            return
        except CrmError:
            raise
        except Exception as exc:  # a connector bug or an unexpected driver error: keep the entries
            log.exception("connector %s failed", self.connector.name)
            self._retry(chunk, f"{type(exc).__name__}: {exc}", None, stats)
            return
        if self.outage_failures:
            log.info("CRM reachable again after %d failed probe(s): circuit closed", self.outage_failures)
        self.outage_failures = 0
        delivered = [e.id for e in chunk if e.id not in result.rejected and e.id not in result.unmatched]
        self.outbox.mark_delivered(delivered, now=self.clock())
        stats.delivered += len(delivered)
        stats.duplicates += result.duplicates
        if result.rejected:
            self.outbox.dead_letter(result.rejected)
            stats.dead += len(result.rejected)
        if result.unmatched:
            self.outbox.park_unmatched(result.unmatched)
            stats.unmatched += len(result.unmatched)
        if result.pause_for:
            self.paused_until = max(self.paused_until, self.clock() + result.pause_for)

    def _open_circuit(self, chunk: list[OutboxEntry], exc: TransientCrmError, stats: DispatchStats) -> None:
        """The CRM is unreachable: stop sending until one probe request after a growing, capped,
        jittered wait (or the CRM's Retry-After)."""
        self.outage_failures += 1
        wait = self._delay(self.outage_failures)
        if exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        now = self.clock()
        self.paused_until = now + wait
        died = self.outbox.retry_later(
            {e.id: self.paused_until for e in chunk},
            error=exc.message,
            give_up_before=now - self.give_up_after,
        )
        stats.retried += len(chunk) - died
        stats.dead += died
        # one line per probe, growing apart: an outage of hours logs a few dozen lines, not a flood
        log.warning(
            "CRM unreachable (failure %d in a row): circuit open, next try in %.0fs: %s",
            self.outage_failures,
            wait,
            exc.message,
        )

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, base_delay=self.base_delay, max_delay=self.max_delay, rng=self.rng)

    def _retry(
        self, chunk: list[OutboxEntry], error: str, retry_after: float | None, stats: DispatchStats
    ) -> None:
        now = self.clock()
        # One jittered delay per attempt count, not per entry: the batch stays together on its retry.
        delays: dict[int, float] = {}
        retry_at = {}
        for entry in chunk:
            attempt = entry.attempts + 1
            if attempt not in delays:
                delays[attempt] = self._delay(attempt)
                if retry_after is not None:
                    delays[attempt] = max(delays[attempt], retry_after)
            retry_at[entry.id] = now + delays[attempt]
        died = self.outbox.retry_later(retry_at, error=error, give_up_before=now - self.give_up_after)
        stats.retried += len(chunk) - died
        stats.dead += died
        log.warning("CRM delivery of %d entries failed, will retry: %s", len(chunk), error)

    # -- loops ---------------------------------------------------------------------------------
    def rounds(self, deadline: float | None = None) -> Iterator[DispatchStats]:
        """Yield the stats of each round until nothing is pending (or `deadline` on `clock` passes),
        sleeping between rounds until the next entry is due. Parked entries that can be addressed by
        now are released first (counted in the first round's `released`)."""
        released = self.release_unmatched()
        while True:
            stats = self.run_once()
            stats.released, released = released, 0
            yield stats
            if deadline is not None and self.clock() >= deadline:
                return
            if stats.claimed:
                continue
            due = self.outbox.next_due()
            if due is None:
                return
            wake = max(due, self.paused_until)
            if deadline is not None and wake > deadline:
                return
            self.sleep(max(wake - self.clock(), 0.001))

    def release_unmatched(self) -> int:
        """Re-queue parked entries whose customer the connector can now address (a later ingest gave
        the customer a CRM record key); returns how many."""
        waiting = self.outbox.unmatched_customers()
        if not waiting:
            return 0
        ready = self.connector.with_record(waiting)
        released = self.outbox.release_unmatched(ready, now=self.clock()) if ready else 0
        if released:
            log.info("released %d parked entries: their customers now have a CRM record key", released)
        return released

    def run_until_empty(self, deadline: float | None = None) -> DispatchStats:
        """Drain the outbox (see `rounds`): returns the totals. Entries that are dead stay for `persona
        crm replay`; unmatched ones wait for a record key."""
        total = DispatchStats()
        for stats in self.rounds(deadline):
            total.add(stats)
        return total

    def run_forever(
        self,
        stop_event: threading.Event,
        *,
        poll_seconds: float | None = None,
        observe: Callable[[DispatchStats, dict[str, int] | None], None] | None = None,
        release_seconds: float = RELEASE_UNMATCHED_SECONDS,
    ) -> None:
        """Background loop for the service: deliver while there is work, idle-wait on `stop_event`
        (at most `poll_seconds`, default the dispatcher's own) so new entries go out promptly. Parked
        (`unmatched`) entries whose customer has a CRM record key by now are released at the start and
        then every `release_seconds` (`release_unmatched`, as `run_until_empty` does).

        `observe(stats, counts)` follows every round (the service's metrics); `counts` (the outbox by
        status) is read at most every OBSERVE_COUNTS_SECONDS, else None."""
        poll_seconds = self.poll_seconds if poll_seconds is None else poll_seconds
        counted_at = released_at = -math.inf
        while not stop_event.is_set():
            try:
                released = 0
                if self.clock() - released_at >= release_seconds:
                    released_at = self.clock()  # a failing look waits its turn too: delivery goes on
                    released = self.release_unmatched()
                stats = self.run_once()
                stats.released = released
                if observe is not None:
                    counts = None
                    if self.clock() - counted_at >= OBSERVE_COUNTS_SECONDS:
                        counts, counted_at = self.outbox.counts(), self.clock()
                    observe(stats, counts)
            except Exception as exc:  # keep the thread alive; entries stay in the outbox
                log.error("CRM dispatcher round failed: %s", exc)
                stop_event.wait(poll_seconds)
                continue
            if stats.claimed:
                continue
            wait = poll_seconds
            due = self.outbox.next_due()
            if due is not None:
                wait = min(poll_seconds, max(max(due, self.paused_until) - self.clock(), 0.01))
            stop_event.wait(wait)


def build_dispatcher(
    settings: Settings, *, connector: Connector | None = None, engine: Engine | None = None
) -> Dispatcher:
    """A dispatcher wired from `settings.crm` over the state database's outbox."""

    outbox = Outbox(engine if engine is not None else make_state_engine(settings.url(settings.state_url)))
    outbox.create_schema()
    crm = settings.crm
    return Dispatcher(
        outbox,
        connector if connector is not None else make_connector(settings),
        batch_size=crm.batch_size,
        give_up_after=crm.give_up_after,
        base_delay=crm.base_delay_seconds,
        max_delay=crm.max_delay_seconds,
        lease_seconds=crm.lease_seconds,
        poll_seconds=crm.poll_seconds,
    )


make_dispatcher = build_dispatcher  # the name next to `make_connector`


def service_dispatchers(settings: Settings) -> list[tuple[str, Dispatcher]]:
    """The outboxes a running service keeps delivering, by name (the `outbox` label of the outbox
    gauges): CRM tags always, and the trigger and segment-list outboxes when rules are configured, so a
    trigger or a list change that met a CRM outage is retried within the poll interval rather than at
    the next refresh or `persona crm sync`. Each claims by lease, so a refresh delivering at the same
    time never sends an entry twice."""
    engine = make_state_engine(settings.url(settings.state_url))
    out = [("crm", build_dispatcher(settings, engine=engine))]
    if settings.triggers.rules:
        from serving.triggers import build_trigger_dispatcher

        out.append(("triggers", build_trigger_dispatcher(settings, engine=engine)))
    if settings.segments.sync:
        from serving.segments import build_segment_dispatcher

        out.append(("segments", build_segment_dispatcher(settings, engine=engine)))
    return out

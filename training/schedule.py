"""Run `persona retrain` on the configured cron in the foreground (single machine).

For a cluster use `deploy/k8s/cronjob.yaml` (concurrencyPolicy Forbid); for a host with cron,
`deploy/crontab.txt`. Both run the same `persona retrain`, whose lock keeps runs from overlapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from core.errors import PersonaError


def next_runs(cron: str, *, start: datetime, count: int = 1, timezone: str = "UTC") -> list[datetime]:
    """The next `count` times (timezone-aware) at which `cron` fires strictly after `start`."""
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise PersonaError(f"schedule.cron: not a valid cron expression: {cron!r}")
    tz = ZoneInfo(timezone)
    base = start.astimezone(tz) if start.tzinfo else start.replace(tzinfo=tz)
    it = croniter(cron, base)
    return [it.get_next(datetime) for _ in range(count)]


def run_schedule(
    *,
    cron: str,
    job: Callable[[], object],
    timezone: str = "UTC",
    once_now: bool = False,
    max_runs: int | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> int:
    """Call `job` at each cron time until interrupted (or `max_runs` runs). `once_now` runs it at once
    first. A failed run is reported and the schedule goes on (the next run may succeed). Returns the
    number of runs. Sleeps in short steps so Ctrl-C is prompt."""
    clock = now or (lambda: datetime.now(ZoneInfo(timezone)))
    runs = 0

    def run_once() -> None:
        nonlocal runs
        runs += 1
        started = clock()
        try:
            job()
            say(f"run {runs} finished ({(clock() - started).total_seconds():.0f}s)")
        except PersonaError as exc:
            say(f"run {runs} failed: {exc}")

    if once_now:
        run_once()
    while max_runs is None or runs < max_runs:
        due = next_runs(cron, start=clock(), timezone=timezone)[0]
        say(f"next run at {due.isoformat()}")
        while (remaining := (due - clock()).total_seconds()) > 0:
            sleep(min(remaining, 30.0))
        run_once()
    return runs

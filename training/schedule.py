"""Run the scheduled jobs (`schedule.refresh`, `schedule.retrain`) on their crons in the foreground
(single machine).

For a cluster use the CronJobs in `deploy/k8s/` (concurrencyPolicy Forbid); for a host with cron,
`deploy/crontab.txt`. Both run the same `persona refresh` / `persona retrain`, whose shared lock keeps
runs from overlapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from core.errors import PersonaError


def next_runs(
    cron: str, *, start: datetime, count: int = 1, timezone: str = "UTC", key: str = "schedule"
) -> list[datetime]:
    """The next `count` times (timezone-aware) at which `cron` fires strictly after `start`."""
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise PersonaError(f"{key}: not a valid cron expression: {cron!r}")
    tz = ZoneInfo(timezone)
    base = start.astimezone(tz) if start.tzinfo else start.replace(tzinfo=tz)
    it = croniter(cron, base)
    return [it.get_next(datetime) for _ in range(count)]


def run_schedule(
    *,
    jobs: Mapping[str, tuple[str, Callable[[], object]]],
    timezone: str = "UTC",
    once_now: bool = False,
    max_runs: int | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> int:
    """Call each job (name -> (cron, callable)) at its cron times until interrupted (or `max_runs`
    runs in all). Jobs due at the same time run in the order given. `once_now` runs the first job at
    once. A failed run is reported and the schedule goes on. Returns the number of runs. Sleeps in
    short steps so Ctrl-C is prompt."""
    clock = now or (lambda: datetime.now(ZoneInfo(timezone)))
    runs = 0

    def run_once(name: str) -> None:
        nonlocal runs
        runs += 1
        started = clock()
        try:
            jobs[name][1]()
            say(f"{name} run {runs} finished ({(clock() - started).total_seconds():.0f}s)")
        except PersonaError as exc:
            say(f"{name} run {runs} failed: {exc}")

    if once_now and jobs:
        run_once(next(iter(jobs)))
    while max_runs is None or runs < max_runs:
        start = clock()
        times = {
            name: next_runs(cron, start=start, timezone=timezone, key=f"schedule.{name}")[0]
            for name, (cron, _) in jobs.items()
        }
        due = min(times.values())
        names = [name for name, at in times.items() if at == due]
        say(f"next run at {due.isoformat()}: {', '.join(names)}")
        while (remaining := (due - clock()).total_seconds()) > 0:
            sleep(min(remaining, 30.0))
        for name in names:
            if max_runs is not None and runs >= max_runs:
                break
            run_once(name)
    return runs

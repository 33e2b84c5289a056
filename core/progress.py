"""Progress for long work: a live bar on a terminal, a few log lines elsewhere (CI, cron)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], *, total: int | None = None, description: str = "working") -> Iterator[T]:
    """Yield `items`, showing progress on stderr. Pure pass-through otherwise."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    start = time.monotonic()
    last_report = start
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last_report >= 5 or done == total:
            of = f"/{total}" if total else ""
            print(f"  {description}: {done}{of} ({now - start:.1f}s)", file=sys.stderr, flush=True)
            last_report = now


def stepper(prefix: str, *, every: float = 5.0) -> Callable[[str], None]:
    """A reporter for long work in phases (`persona ingest` at a million customers runs for minutes):
    `step("staging events: 1,200,000 rows")` prints at once when the phase (the text before the first
    colon) changes, and repeats of one phase at most every `every` seconds, each with the time since
    the start, on stderr."""
    start = time.monotonic()
    last: dict[str, object] = {"phase": None, "at": 0.0}

    def step(message: str) -> None:
        phase = message.split(":", 1)[0]
        now = time.monotonic()
        if phase != last["phase"] or now - float(last["at"]) >= every:  # type: ignore[arg-type]
            print(f"  {prefix}: {message} ({now - start:.1f}s)", file=sys.stderr, flush=True)
            last.update(phase=phase, at=now)

    return step

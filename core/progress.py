"""Progress for long work: a live bar on a terminal, a few log lines elsewhere (CI, cron)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
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

"""Glue for scoring with write-back: apply tags to the tag store and queue the changes for the CRM in
ONE transaction of the state database, then return without waiting for the CRM."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine

from serving.changes import TagChange
from serving.outbox import Outbox


class TagStoreLike(Protocol):
    """What `serving/tag_store.py: TagStore` offers the write-back (applied in the caller's transaction)."""

    def apply(
        self,
        conn: Connection,
        *,
        tags: Any,
        produced_by: Any,
        inputs: Any,
        at: datetime,
        as_of: datetime | None = None,
    ) -> list[TagChange]: ...


def record_and_enqueue(
    engine: Engine,
    *,
    tag_store: TagStoreLike,
    tags: Any,
    produced_by: Any,
    inputs: Mapping[str, Any] | Any,
    at: datetime,
    as_of: datetime | None = None,
    outbox: Outbox | None = None,
    also: Callable[[Connection, list[TagChange]], object] | None = None,
) -> list[TagChange]:
    """Apply `tags` through `tag_store` and enqueue the resulting changes, atomically.

    If anything fails (the tag store or the outbox), neither the tag change nor its outbox entry is
    kept, so the CRM never misses a change Persona recorded and never gets one Persona did not.
    `engine` must be the state database holding both the tag tables and the outbox. `as_of` is the
    data's clock the tags were computed at (kept in the tag history).
    """
    queue = outbox if outbox is not None else Outbox(engine)
    with engine.begin() as conn:
        changes = tag_store.apply(conn, tags=tags, produced_by=produced_by, inputs=inputs, at=at, as_of=as_of)
        queue.enqueue(conn, changes)
        if also is not None and changes:  # e.g. triggers: queued with the changes that fire them
            also(conn, changes)
    return changes

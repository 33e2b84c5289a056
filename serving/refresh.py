"""`persona refresh`: new source data -> features of the new snapshot -> materialize -> score -> queue
tag changes (and trigger firings) -> deliver, without training. Runs under the retrain lock.

Incremental where the sources allow:
- ingest is row-level (`features.incremental`): a source with `incremental.cursor` is read from the last
  run's `as_of` on (in the database for a SQL table), a file whose size and modification time are those
  of the last run is not read at all, and only the persons the new rows touch are re-ingested and
  replaced in the clean tables; the per-source watermarks live in the refresh state and move only after
  the clean tables are written (`--full` re-ingests everything);
- a run whose data is no newer than the last run's `as_of` (the data's clock) computes nothing and only
  delivers what is still pending, so a re-run is harmless;
- otherwise only the new snapshot's feature rows are computed and added (history stays as retrain built
  it), and the online store is materialized from where it ended; the run reports the rows newer than
  the last `as_of` per source (`new_rows`).

Each tag's `cadence` decides whether this run recomputes it: with `cadence` given (`--cadence daily`),
every tag whose cadence is that often or more often; otherwise a tag is due when the data's clock has
entered a new hour / day / ISO week / month since the tag was last computed (realtime: always).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import PersonaError
from core.lock import RetrainLock

if TYPE_CHECKING:
    from configs.settings import Settings
    from serving.batch import BatchSummary
    from serving.dispatcher import DispatchStats

# from most to least often
CADENCE_ORDER = ("realtime", "hourly", "daily", "weekly", "monthly")


def _bucket(moment: pd.Timestamp, cadence: str) -> tuple[int, ...]:
    """The period of the data's clock `moment` falls in, for `cadence`."""
    if cadence == "hourly":
        return (moment.year, moment.dayofyear, moment.hour)
    if cadence == "daily":
        return (moment.year, moment.dayofyear)
    if cadence == "weekly":
        year, week, _ = moment.isocalendar()
        return (year, week)
    if cadence == "monthly":
        return (moment.year, moment.month)
    raise ValueError(f"unknown cadence {cadence!r}")


def due_tags(
    cadences: dict[str, str],
    *,
    as_of: pd.Timestamp,
    last_computed: dict[str, str],
    cadence: str | None = None,
    everything: bool = False,
) -> list[str]:
    """The tags (of `cadences`: tag -> cadence) this run recomputes (see module doc)."""
    if cadence is not None and cadence not in CADENCE_ORDER:
        raise PersonaError(f"--cadence: one of {', '.join(CADENCE_ORDER)}, got {cadence!r}")
    due = []
    for tag, every in cadences.items():
        if everything or every == "realtime":
            due.append(tag)
        elif cadence is not None:
            if CADENCE_ORDER.index(every) <= CADENCE_ORDER.index(cadence):
                due.append(tag)
        elif tag not in last_computed or _bucket(as_of, every) != _bucket(
            pd.Timestamp(last_computed[tag]), every
        ):
            due.append(tag)
    return due


@dataclass
class RefreshReport:
    as_of: str | None = None
    previous_as_of: str | None = None
    new_data: bool = True
    snapshot: str | None = None
    recomputed: list[str] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    batch: BatchSummary | None = None
    firings: int = 0  # trigger actions queued
    segments: dict[str, Any] = field(default_factory=dict)  # name -> SegmentSync
    segments_delivered: DispatchStats | None = None
    delivered: DispatchStats | None = None
    triggers_delivered: DispatchStats | None = None
    steps: dict[str, float] = field(default_factory=dict)
    ingest_skipped: bool = False  # no source row was new: the clean tables are those of the last run
    source_rows: dict[str, int] = field(default_factory=dict)  # source -> rows read that were new
    reingested: int = 0  # persons re-ingested
    new_rows: dict[str, int] = field(default_factory=dict)  # clean rows newer than the last as_of


def load_refresh_state(settings: Settings) -> dict[str, Any]:
    path = settings.path(settings.refresh.state_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise PersonaError(
            f"{path}: not readable JSON ({exc})", hint="delete it: the next refresh recomputes every tag"
        ) from None


def _save_refresh_state(settings: Settings, state: dict[str, Any]) -> None:
    path = settings.path(settings.refresh.state_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def refresh(
    settings: Settings,
    *,
    cadence: str | None = None,
    everything: bool = False,
    ingest: bool = True,
    deliver: bool = True,
    full: bool = False,
    deliver_timeout: float = 300.0,
    say: Callable[[str], None] = print,
    connector: Any = None,
) -> RefreshReport:
    """Run one refresh under the retrain lock (see module doc); `full` re-ingests every source row.
    Raises RetrainBusy when a retrain or another refresh holds the lock."""
    report = RefreshReport()
    if settings.triggers.rules or settings.segments.sync:
        from artifacts.catalog import load_catalog

        # the rules are checked against the catalog before anything is read or written
        catalog = load_catalog(settings)
        check_rules(
            settings, {t.key: t.value_type for t in catalog.tags}, {t.key: t.values for t in catalog.tags}
        )
    with RetrainLock(settings.path(settings.training.lock_path), job="refresh"):
        memory = load_refresh_state(settings)
        report.previous_as_of = memory.get("as_of")
        if ingest:
            from features.incremental import ingest_incremental

            started = time.perf_counter()
            outcome = ingest_incremental(settings, state=memory.get("ingest"), full=full)
            report.steps["ingest"] = time.perf_counter() - started
            report.ingest_skipped = outcome.result is None
            report.source_rows = outcome.new_rows
            report.reingested = outcome.customers
            say(outcome.line())
            # the clean tables are written: the watermarks may move
            memory["ingest"] = outcome.state
            _save_refresh_state(settings, memory)
            if report.previous_as_of and outcome.result is not None:
                report.new_rows = new_rows_since(outcome.result.tables, pd.Timestamp(report.previous_as_of))
                if report.new_rows:
                    say(
                        "new since the last as_of: "
                        + ", ".join(f"{n:,} {name}" for name, n in report.new_rows.items())
                    )
        from features.clock import clean_as_of

        as_of = clean_as_of(settings)
        report.as_of = as_of.isoformat()
        if report.previous_as_of and as_of <= pd.Timestamp(report.previous_as_of) and not everything:
            report.new_data = False
            say(
                f"no source data newer than the last refresh's as_of {report.previous_as_of}: nothing recomputed"
            )
        else:
            _recompute(settings, report, memory, as_of=as_of, cadence=cadence, everything=everything, say=say)
        if deliver:
            _deliver(settings, report, timeout=deliver_timeout, connector=connector)
    return report


def _recompute(  # type: ignore[no-untyped-def]
    settings: Settings, report: RefreshReport, memory: dict[str, Any], *, as_of, cadence, everything, say
) -> None:
    from features.build import append_snapshot
    from features.feast_io import get_store, materialize, materialized_as_of
    from serving.batch import score_everyone
    from serving.scoring import load_state

    snapshot = as_of.floor("D")
    report.snapshot = snapshot.date().isoformat()
    started = time.perf_counter()
    built = append_snapshot(settings, snapshot=snapshot)
    report.steps["features"] = time.perf_counter() - started
    say(f"features: snapshot {report.snapshot} computed for {len(built.written)} tables")
    started = time.perf_counter()
    ended = materialized_as_of(get_store(settings), list(settings.feast.services))
    # a snapshot at or before the materialized end is not in an incremental window: reload from the start
    full = ended is None or snapshot <= pd.Timestamp(ended)
    stats = materialize(settings, full=full)
    report.steps["materialize"] = time.perf_counter() - started
    say(
        f"feast: materialized {stats.rows_written:,} rows{' (full)' if full else ''} up to {as_of.isoformat()}"
    )

    state = load_state(settings)
    cadences = {t.key: t.cadence for t in state.catalog.tags}
    tag_types = {t.key: t.value_type for t in state.catalog.tags}
    check_rules(settings, tag_types, {t.key: t.values for t in state.catalog.tags})
    last = dict(memory.get("tags", {}))
    report.recomputed = due_tags(
        cadences, as_of=as_of, last_computed=last, cadence=cadence, everything=everything
    )
    report.not_due = [t for t in cadences if t not in report.recomputed]
    say(
        f"tags recomputed: {len(report.recomputed)} ({', '.join(report.recomputed) or 'none'}); not due: {len(report.not_due)}"
    )

    rules = settings.triggers.rules
    also = None
    if rules:
        from serving.triggers import fire_in_run, trigger_outbox

        outbox = trigger_outbox(state.tag_store.engine)

        def also(conn, changes, tags) -> None:  # type: ignore[no-untyped-def]
            firings = fire_in_run(
                conn, rules, changes, tags, tag_types=tag_types, not_recomputed=report.not_due
            )
            report.firings += outbox.enqueue(conn, firings)

    started = time.perf_counter()
    report.batch = score_everyone(
        settings,
        state=state,
        only_tags=set(report.recomputed),
        moves_of=tuple(settings.refresh.report_moves),
        also=also,
    )
    report.steps["score"] = time.perf_counter() - started
    from serving.dashboard.summary import write_summaries

    write_summaries(settings)  # the dashboard's numbers of these scores, so no page computes them
    if settings.segments.sync:
        from datetime import UTC, datetime

        from serving.segments import sync_segments

        report.segments = sync_segments(
            state.tag_store.engine, settings.segments.sync, at=datetime.now(UTC), tag_types=tag_types
        )
    for tag in report.recomputed:
        last[tag] = as_of.isoformat()
    _save_refresh_state(
        settings,
        {
            "as_of": as_of.isoformat(),
            "tags": last,
            "snapshot": report.snapshot,
            "ingest": memory.get("ingest"),
        },
    )


# the clean tables' time of activity (features.ingest.ACTIVITY_TIMESTAMPS and the leads' creation)
NEW_ROW_TIMESTAMPS = {"orders": "order_ts", "events": "event_ts", "leads": "created_ts"}


def new_rows_since(tables: dict[str, pd.DataFrame | None], since: pd.Timestamp) -> dict[str, int]:
    """Clean rows per table dated after `since` (the last run's as_of)."""
    out = {}
    for name, column in NEW_ROW_TIMESTAMPS.items():
        table = tables.get(name)
        if table is not None and column in table.columns:
            count = int((pd.to_datetime(table[column], utc=True) > since).sum())
            if count:
                out[name] = count
    return out


def check_rules(
    settings: Settings, tag_types: dict[str, str], tag_values: dict[str, tuple[str, ...] | None] | None = None
) -> None:
    """Every tag a trigger or segment rule names is in the catalog (`tag_types`: tag -> type; a trigger's
    `becomes` among the tag's declared `tag_values`), every
    `where` expression parses and type-checks, and no trigger's list is a list segment sync keeps in
    step (else a one-line ConfigError naming the key)."""
    from core.errors import ConfigError
    from serving.segments import check_segment_rules
    from serving.triggers import check_trigger_rules

    check_trigger_rules(settings.triggers.rules, tag_types, tag_values)
    check_segment_rules(settings.segments.sync, tag_types)
    synced = {r.list_name for r in settings.segments.sync}
    for rule in settings.triggers.rules:
        if rule.add_to_list is not None and rule.add_to_list.name in synced:
            raise ConfigError(
                f"triggers.rules[{rule.name}].add_to_list.name: {rule.add_to_list.name!r} is a list "
                "segments.sync keeps in step (its removes would undo the trigger's adds): use another list"
            )


def _deliver(settings: Settings, report: RefreshReport, *, timeout: float, connector: Any) -> None:
    from serving.dispatcher import build_dispatcher
    from serving.outbox import make_state_engine

    engine = make_state_engine(settings.url(settings.state_url))
    dispatcher = build_dispatcher(settings, engine=engine, connector=connector)
    started = time.perf_counter()
    report.delivered = dispatcher.run_until_empty(deadline=time.time() + timeout)
    dispatcher.connector.close()
    if settings.triggers.rules:
        from serving.triggers import build_trigger_dispatcher

        triggers = build_trigger_dispatcher(settings, engine=engine)
        report.triggers_delivered = triggers.run_until_empty(deadline=time.time() + timeout)
        triggers.connector.close()
    if settings.segments.sync:
        from serving.segments import build_segment_dispatcher

        lists = build_segment_dispatcher(settings, engine=engine)
        report.segments_delivered = lists.run_until_empty(deadline=time.time() + timeout)
    report.steps["deliver"] = time.perf_counter() - started


def describe(report: RefreshReport) -> Iterable[str]:
    """What the run changed, line by line, for people."""
    yield f"data as of {report.as_of} (last refresh: {report.previous_as_of or 'never'})"
    batch = report.batch
    if batch is not None:
        yield f"tag changes queued: {batch.queued_changes:,} for {batch.customers:,} customers"
        for tag in report.recomputed:
            yield f"  {tag}: {batch.changes_by_tag.get(tag, 0):,}"
        for (tag, old, new), count in sorted(batch.moves.items(), key=lambda kv: (kv[0][0], -kv[1])):
            yield f"  moved {tag} {old or '(unset)'} -> {new or '(unset)'}: {count:,} customers"
        if report.firings:
            yield f"trigger actions queued: {report.firings:,}"
    for name, synced in report.segments.items():
        yield f"segment {name}: {synced.members:,} members (+{synced.added:,} -{synced.removed:,})"
    for name, stats in (
        ("crm", report.delivered),
        ("triggers", report.triggers_delivered),
        ("lists", report.segments_delivered),
    ):
        if stats is not None:
            yield (
                f"{name}: delivered {stats.delivered:,}, retried {stats.retried:,}, dead-lettered {stats.dead:,}, "
                f"unmatched {stats.unmatched:,} (no CRM record key yet), released {stats.released:,}"
            )
    if report.steps:
        yield "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.steps.items())

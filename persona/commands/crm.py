"""CLI: `persona crm sync | replay | status`: the CRM write-back outbox, by hand."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import click

from persona.commands._common import require_data_dir, settings_from, sqlite_file

if TYPE_CHECKING:
    from serving.dispatcher import Dispatcher, DispatchStats


def _drain(dispatcher: Dispatcher, *, timeout: float, description: str) -> DispatchStats:
    from core.progress import track
    from serving.dispatcher import DispatchStats

    pending = dispatcher.outbox.counts()["pending"]
    total = DispatchStats()
    rounds = dispatcher.rounds(deadline=time.time() + timeout)
    for stats in track(
        rounds, total=max(1, math.ceil(pending / dispatcher.batch_size)), description=description
    ):
        total.add(stats)
    return total


def _summary(dispatcher: Dispatcher, stats: DispatchStats) -> None:
    counts = dispatcher.outbox.counts()
    click.echo(
        f"crm ({dispatcher.connector.name}): delivered {stats.delivered:,}, retried {stats.retried:,}, "
        f"dead-lettered {stats.dead:,}, superseded {stats.superseded:,}, already applied {stats.duplicates:,}, "
        f"rate-limited {stats.rate_limited:,} times"
    )
    click.echo(
        f"outbox: {counts['pending']:,} pending, {counts['delivered']:,} delivered, {counts['dead']:,} dead, "
        f"{counts['unmatched']:,} unmatched"
    )
    if stats.released:
        click.echo(f"released {stats.released:,} parked change(s): their customers now have a CRM record key")
    if counts["pending"]:
        due = dispatcher.outbox.next_due()
        if due is not None:
            click.echo(f"next retry in {max(0.0, due - time.time()):.0f}s (run `persona crm sync` again)")
    if counts["dead"]:
        click.echo("dead letters: `persona crm status` shows why; `persona crm replay` re-sends them")


def _dispatcher(settings, *, triggers: bool, segments: bool) -> Dispatcher:  # type: ignore[no-untyped-def]
    """The CRM tags' dispatcher, or with `triggers` the one of the trigger outbox (webhooks, tasks,
    notes, list adds), with `segments` the one of the segment-list outbox."""
    from serving.dispatcher import build_dispatcher
    from serving.outbox import make_state_engine

    if triggers and segments:
        raise click.UsageError("--triggers or --segments, not both")
    if triggers:
        from serving.triggers import build_trigger_dispatcher

        return build_trigger_dispatcher(settings, engine=make_state_engine(settings.url(settings.state_url)))
    if segments:
        from serving.segments import build_segment_dispatcher

        return build_segment_dispatcher(settings, engine=make_state_engine(settings.url(settings.state_url)))
    return build_dispatcher(settings)


TRIGGERS = click.option("--triggers", is_flag=True, help="The trigger outbox (webhooks) instead of CRM tags.")
SEGMENTS = click.option(
    "--segments", is_flag=True, help="The segment-list outbox (segments.sync) instead of CRM tags."
)


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.group()
    def crm() -> None:
        """CRM write-back: deliver queued tag changes, replay dead letters, show the outbox."""

    @crm.command()
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=600.0,
        show_default=True,
        help="Stop waiting for retries after this many seconds (entries stay queued).",
    )
    @TRIGGERS
    @SEGMENTS
    @click.pass_context
    def sync(ctx: click.Context, timeout: float, triggers: bool, segments: bool) -> None:
        """Deliver every queued tag change to the CRM once (retrying with back-off until done); parked
        changes whose customer has a CRM record key by now go too."""
        dispatcher = _dispatcher(settings_from(ctx), triggers=triggers, segments=segments)
        try:
            stats = _drain(dispatcher, timeout=timeout, description="delivering to CRM")
            _summary(dispatcher, stats)
        finally:
            dispatcher.connector.close()

    @crm.command()
    @click.option("--id", "ids", type=int, multiple=True, help="Replay only these outbox ids (default: all).")
    @click.option("--no-send", is_flag=True, help="Only re-queue; the next `crm sync` or the service sends.")
    @click.option("--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True)
    @TRIGGERS
    @SEGMENTS
    @click.pass_context
    def replay(
        ctx: click.Context,
        ids: tuple[int, ...],
        no_send: bool,
        timeout: float,
        triggers: bool,
        segments: bool,
    ) -> None:
        """Re-queue dead-lettered changes (after fixing their cause) and send them."""
        dispatcher = _dispatcher(settings_from(ctx), triggers=triggers, segments=segments)
        try:
            count = dispatcher.outbox.replay(now=time.time(), ids=list(ids) if ids else None)
            click.echo(f"re-queued {count:,} dead letter(s)")
            if count and not no_send:
                stats = _drain(dispatcher, timeout=timeout, description="re-sending to CRM")
                _summary(dispatcher, stats)
        finally:
            dispatcher.connector.close()

    @crm.command()
    @click.option(
        "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Dead letters to list."
    )
    @click.pass_context
    def status(ctx: click.Context, limit: int) -> None:
        """Outbox counts (pending / delivered / dead / superseded / unmatched) of CRM tags, trigger actions
        and segment lists, and the oldest dead letters."""
        from serving.outbox import (
            STATUSES,
            Outbox,
            make_state_engine,
            segment_outbox_table,
            trigger_outbox_table,
        )

        settings = settings_from(ctx)
        require_data_dir(settings)
        where = f"{settings.crm.connector} -> {_safe_url(settings.url(settings.crm.url))}"
        state = sqlite_file(settings.url(settings.state_url))
        if state is not None and not state.is_file():
            click.echo(f"outbox ({where}): empty, nothing scored yet ({state} does not exist)")
            return
        outbox = Outbox(make_state_engine(settings.url(settings.state_url)))
        outbox.create_schema()
        counts = outbox.counts()
        click.echo(f"outbox ({where}): " + ", ".join(f"{counts[s]:,} {s}" for s in STATUSES))
        due = outbox.next_due()
        if counts["pending"] and due is not None:
            click.echo(f"next delivery due in {max(0.0, due - time.time()):.0f}s")
        if counts["unmatched"]:
            click.echo(
                f"  unmatched: {counts['unmatched']:,} change(s) of {len(outbox.unmatched_customers()):,} "
                "customer(s) with no CRM record key yet (e.g. email- or phone-only customers); they are "
                "sent once an ingest gives the customer one (crm.record_key)"
            )
        for label, table in (("triggers", trigger_outbox_table), ("lists", segment_outbox_table)):
            other = Outbox(outbox.engine, table=table)
            other.create_schema()
            held = other.counts()
            if any(held.values()):
                click.echo(f"{label} outbox: " + ", ".join(f"{held[s]:,} {s}" for s in STATUSES))
        for dead in outbox.dead_letters(limit=limit):
            click.echo(
                f"  dead #{dead.id:,} customer {dead.customer_id} tag {dead.tag}={dead.new_value!r} "
                f"after {dead.attempts} attempt(s): {dead.reason}"
            )


def _safe_url(url: str) -> str:
    """The URL without any password, for display."""
    from core.redact import mask_urls

    return mask_urls(url)

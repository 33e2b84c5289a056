"""CLI: `persona refresh` (new data -> tags -> CRM, no training) and `persona schedule` (both jobs on
their crons in the foreground)."""

from __future__ import annotations

import click

from persona.commands._common import settings_from

CADENCES = ("realtime", "hourly", "daily", "weekly", "monthly")


def run_refresh(settings, *, cadence=None, everything=False, ingest=True, deliver=True, full=False) -> None:  # type: ignore[no-untyped-def]
    from serving.refresh import describe, refresh

    report = refresh(
        settings,
        cadence=cadence,
        everything=everything,
        ingest=ingest,
        deliver=deliver,
        full=full,
        say=click.echo,
    )
    for line in describe(report):
        click.echo(line)


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.command("refresh")
    @click.option(
        "--cadence",
        type=click.Choice(CADENCES),
        default=None,
        help="Recompute the tags of this cadence and the more frequent ones (default: the tags due by "
        "the time since each one's last computation, on the data's clock).",
    )
    @click.option("--all", "everything", is_flag=True, help="Recompute every tag, new data or not.")
    @click.option("--skip-ingest", is_flag=True, help="Use the clean tables as they are.")
    @click.option(
        "--full",
        is_flag=True,
        help="Re-ingest every source row (default: only the new rows and the customers they touch).",
    )
    @click.option(
        "--no-deliver", is_flag=True, help="Queue the changes; leave delivery to `persona crm sync`."
    )
    @click.pass_context
    def refresh_cmd(
        ctx: click.Context,
        cadence: str | None,
        everything: bool,
        skip_ingest: bool,
        full: bool,
        no_deliver: bool,
    ) -> None:
        """Ingest new source data, compute features of the new snapshot, materialize, score, queue tag
        changes and triggers, deliver: no training. Locked like retrain."""
        run_refresh(
            settings_from(ctx),
            cadence=cadence,
            everything=everything,
            ingest=not skip_ingest,
            deliver=not no_deliver,
            full=full,
        )

    @cli.command("schedule")
    @click.option(
        "--once-now", is_flag=True, help="Run a retrain (and its refresh) at once, then follow the crons."
    )
    @click.option(
        "--runs", type=int, default=None, help="Stop after this many runs (default: run until Ctrl-C)."
    )
    @click.option("--skip-build", is_flag=True, help="Retrain without rebuilding features.")
    @click.pass_context
    def schedule_cmd(ctx: click.Context, once_now: bool, runs: int | None, skip_build: bool) -> None:
        """Run `persona refresh` on `schedule.refresh` and `persona retrain` on `schedule.retrain` in the
        foreground (Ctrl-C stops). Each retrain is followed by a refresh of every tag, so the CRM gets the
        new champions' tags."""
        from datetime import datetime
        from zoneinfo import ZoneInfo

        from training.retrain import retrain
        from training.schedule import next_runs, run_schedule

        settings = settings_from(ctx)
        plan = settings.schedule
        tz = plan.timezone

        def retrain_then_refresh() -> None:
            retrain(settings, build=not skip_build, say=click.echo)
            run_refresh(settings, everything=True)

        now = datetime.now(ZoneInfo(tz))
        click.echo(
            f"refresh '{plan.refresh}', retrain '{plan.retrain}' ({tz}); next refresh: "
            f"{next_runs(plan.refresh, start=now, timezone=tz)[0].isoformat()}, next retrain: "
            f"{next_runs(plan.retrain, start=now, timezone=tz)[0].isoformat()}"
        )
        try:
            run_schedule(
                jobs={
                    "retrain": (plan.retrain, retrain_then_refresh),
                    "refresh": (plan.refresh, lambda: run_refresh(settings)),
                },
                timezone=tz,
                once_now=once_now,
                max_runs=runs,
                say=click.echo,
            )
        except KeyboardInterrupt:
            click.echo("schedule stopped")

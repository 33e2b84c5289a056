"""CLI: `persona features ...`. The group lives at module level so other stages add commands to it
(`@features.command("apply")`) next to `build`."""

from __future__ import annotations

from datetime import datetime

import click

from persona.commands._common import settings_from


@click.group("features")
def features() -> None:
    """Point-in-time customer feature tables and the Feast feature store."""


@features.command("build")
@click.option(
    "--snapshot",
    "snapshots",
    multiple=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Snapshot date YYYY-MM-DD (repeatable); overrides the configured snapshots.",
)
@click.pass_context
def build(ctx: click.Context, snapshots: tuple[datetime, ...]) -> None:
    """Compute the feature tables from the clean data into {data_dir}/features (Feast sources)."""
    from core.progress import track
    from features.build import build_features

    settings = settings_from(ctx)
    report = build_features(
        settings,
        snapshots=[s.date() for s in snapshots] or None,
        progress=lambda items: track(items, total=len(items), description="feature tables"),
    )
    first, last = report.snapshots[0], report.snapshots[-1]
    click.echo(
        f"{len(report.snapshots)} snapshot(s) from {first:%Y-%m-%d} to {last:%Y-%m-%d}, "
        f"data as of {report.as_of:%Y-%m-%d %H:%M} UTC"
    )
    for name, (path, rows) in report.written.items():
        click.echo(f"  {name}: {rows:,} rows -> {path}")
    for name, reason in report.skipped.items():
        click.echo(f"  {name}: not built: {reason}")
    for note in report.notes:
        click.echo(f"  note: {note}")


@features.command("apply")
@click.pass_context
def apply(ctx: click.Context) -> None:
    """Register the Feast definitions in feature_repo/ (entity, views, versioned services)."""
    import time
    from pathlib import Path

    from features.feast_io import apply_repo, load_definitions

    settings = settings_from(ctx)
    started = time.perf_counter()
    apply_repo(settings)
    contents = load_definitions(settings)
    absent = [v.name for v in contents.feature_views if not Path(v.batch_source.path).is_file()]
    click.echo(
        f"applied {len(contents.feature_views)} feature views, {len(contents.feature_services)} feature "
        f"services to project {settings.feast.project!r} in {time.perf_counter() - started:.1f}s"
    )
    for name in absent:
        click.echo(f"  {name}: no feature table yet (optional source absent); skipped by materialize")


@features.command("materialize")
@click.option(
    "--end",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="Materialize snapshots up to this UTC time (default: the data's as_of, recorded by features build).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Start from the beginning instead of where the last run stopped: for a new or emptied online "
    "store (e.g. after switching to Redis) or after rebuilding historical snapshots.",
)
@click.pass_context
def materialize(ctx: click.Context, end: datetime | None, full: bool) -> None:
    """Copy the latest feature values into the online store (incremental: continues where it stopped)."""
    import os
    from datetime import UTC

    from features.feast_io import materialize as run_materialize

    os.environ.setdefault("TQDM_DISABLE", "1")  # Feast's own bars; ours is shown instead
    settings = settings_from(ctx)
    stats = run_materialize(settings, end=end.replace(tzinfo=UTC) if end else None, progress=True, full=full)
    click.echo(
        f"materialized {stats.rows_written:,} rows up to {stats.end:%Y-%m-%d %H:%M} UTC "
        f"into {settings.feast.online_store} in {stats.seconds:.1f}s"
    )
    for name, rows in stats.per_view.items():
        click.echo(f"  {name}: {rows:,} rows")
    for name in stats.skipped:
        click.echo(f"  {name}: skipped (no feature table)")


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(features)

"""CLI: `persona ingest` (raw sources -> validated, identity-resolved clean tables)."""

from __future__ import annotations

from datetime import datetime

import click

from persona.commands._common import settings_from


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.command("ingest")
    @click.option(
        "--as-of",
        "as_of",
        type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
        default=None,
        help="The data's clock (UTC): labels, snapshots and staleness are judged against it and later "
        "rows are quarantined. Default: sources.as_of, else the latest activity in the sources.",
    )
    @click.pass_context
    def ingest(ctx: click.Context, as_of: datetime | None) -> None:
        """Read, validate and identity-resolve the sources into data/clean (no raw PII)."""
        from core.progress import stepper, track
        from features.ingest import clean_dir, run_ingest

        settings = settings_from(ctx)
        result = run_ingest(
            settings,
            as_of=as_of,
            progress=lambda names: track(names, description="reading sources"),
            step=stepper("ingest"),
        )
        origin = "given" if result.as_of_given else "the latest activity in the sources"
        click.echo(f"ingest as of {result.as_of:%Y-%m-%d %H:%M} UTC ({origin}) -> {clean_dir(settings)}")
        click.echo(f"  {'source':<9} {'read':>10} {'kept':>10} {'quarantined':>12} {'duplicates':>11}")
        for name, rep in result.sources.items():
            if rep.status == "absent":
                click.echo(f"  {name:<9} absent (not configured): stages that need it step aside")
                continue
            click.echo(
                f"  {name:<9} {rep.read:>10,} {rep.kept:>10,} {rep.quarantined:>12,} {rep.duplicates_removed:>11,}"
            )
            for note in rep.notes:
                click.echo(f"            {note}")
            if rep.missing_optional_columns:
                click.echo(
                    f"            optional columns not in the source: {', '.join(rep.missing_optional_columns)}"
                )
        customers = result.tables["customers"]
        assert customers is not None
        withdrawn = int((~customers["consent_profiling"]).sum())
        rules = ", ".join(f"{k} {v:,}" for k, v in sorted(result.match_rules.items()))
        click.echo(
            f"  customers {len(customers):,} ({withdrawn:,} withdrew consent); records matched by: {rules}"
        )
        quarantined = sum(rep.quarantined for rep in result.sources.values())
        if quarantined:
            click.echo(f"  {quarantined:,} rows quarantined: see clean/quarantine.parquet")
        from persona.commands.consent import enforce_pending

        enforce_pending(settings)

"""CLI: `persona data ...` (the synthetic source systems)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from persona.commands._common import settings_from


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.group("data")
    def data() -> None:
        """Synthetic CRM data: the source systems Persona reads."""

    @data.command("generate")
    @click.option(
        "--customers",
        type=click.IntRange(min=1),
        default=None,
        help="Number of true persons (default: generator.customers).",
    )
    @click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=None,
        help="Random seed; the same seed writes byte-identical files.",
    )
    @click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Output directory (default: {data_dir}/raw).",
    )
    @click.option(
        "--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="First day of activity."
    )
    @click.option(
        "--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Last day of activity."
    )
    @click.option("--force", is_flag=True, help="Replace an output directory that already holds data.")
    @click.option(
        "--continue",
        "continue_",
        is_flag=True,
        help="Append the next --days days of orders to the existing orders in OUT (for `persona refresh`).",
    )
    @click.option("--days", type=int, default=1, show_default=True, help="Days to add with --continue.")
    @click.pass_context
    def generate(
        ctx: click.Context,
        customers: int | None,
        seed: int | None,
        out: Path | None,
        start: datetime | None,
        end: datetime | None,
        force: bool,
        continue_: bool,
        days: int,
    ) -> None:
        """Write crm.sqlite, orders.csv.gz, events.csv.gz, leads.csv and ground_truth/ into OUT."""
        if continue_:
            from features.synthetic.continuation import continue_orders

            settings = settings_from(ctx)
            target = out if out is not None else settings.data_dir / "raw"
            seed_used = seed if seed is not None else settings.generator.seed
            added = continue_orders(target, days=days, seed=seed_used)
            click.echo(
                f"added {added.orders:,} orders of {added.customers:,} customers on "
                f"{added.first_day}..{added.last_day} to {target / 'orders.csv.gz'}"
            )
            return
        from core.progress import track
        from features.synthetic import generate as run_generator

        given = {
            "customers": customers,
            "seed": seed,
            "start": start and start.date(),
            "end": end and end.date(),
        }
        overrides = {k: v for k, v in given.items() if v is not None}
        settings = settings_from(ctx, **({"generator": overrides} if overrides else {}))
        config = settings.generator
        target = out if out is not None else settings.data_dir / "raw"
        click.echo(
            f"generating {config.customers:,} persons, seed {config.seed}, {config.start}..{config.end} -> {target}"
        )
        summary = run_generator(
            config,
            out=target,
            force=force,
            progress=lambda stages: track(stages, total=len(stages), description="generating"),
        )
        for source, rows in summary.rows.items():
            click.echo(f"  {source:<9} {rows:>12,} rows")
        click.echo(
            f"  persons {summary.persons:,} (customers {summary.customers:,}, converted leads "
            f"{summary.leads_converted:,}); done in {summary.seconds:.1f}s"
        )

    @data.command("campaign-outcomes")
    @click.argument("campaign")
    @click.option("--seed", type=int, default=None, help="Outcome seed (default: generator.seed).")
    @click.option(
        "--raw",
        "raw",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="The generated sources (default: {data_dir}/raw).",
    )
    @click.pass_context
    def campaign_outcomes(ctx: click.Context, campaign: str, seed: int | None, raw: Path | None) -> None:
        """Let a campaign's simulated outcomes arrive: orders in its window, with the generator's known
        effect by true persona, appended to the raw orders (then `persona ingest --as-of` its window end)."""
        from artifacts.campaigns import assignments, outcome_window, read_engine, stored_spec
        from core.errors import ValidationFailed
        from features.ingest import load_clean
        from features.synthetic.campaigns import write_campaign_orders

        settings = settings_from(ctx)
        engine = read_engine(settings)
        if engine is None:
            raise ValidationFailed(
                f"no campaign {campaign!r}; create it first: persona campaign create {campaign}"
            )
        spec = stored_spec(engine, campaign)
        if spec.outcome.kind == "event":
            raise ValidationFailed(
                f"campaign {campaign!r}: outcome.kind: the generator simulates orders, not {spec.outcome.event_type!r} events"
            )
        assigned = assignments(engine, campaign)
        if assigned.empty:
            raise ValidationFailed(
                f"campaign {campaign!r} has no assignments yet: persona campaign assign {campaign}"
            )
        start, end = outcome_window(spec)
        result = write_campaign_orders(
            raw if raw is not None else settings.data_dir / "raw",
            campaign=campaign,
            assigned=assigned[["customer_id", "arm"]],
            identity_map=load_clean(settings, "identity_map"),
            control=spec.control,
            start=start,
            window_days=spec.outcome.window_days,
            seed=seed if seed is not None else settings.generator.seed,
        )
        click.echo(
            f"campaign {campaign}: {result.orders:,} orders from {result.customers:,} assigned customers in "
            f"{start.date()}..{end.date()} (true mean effect {result.true_effect:+.4f}; "
            f"{result.unknown} not simulated: unknown to the ground truth or the ERP)"
        )
        click.echo(f"next: persona ingest --as-of {end:%Y-%m-%d}")

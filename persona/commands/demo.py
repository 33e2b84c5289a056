"""CLI: `persona demo`, the whole pipeline on synthetic data, sources to CRM (what `make demo` runs)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from persona.commands._common import settings_from

STEPS = (
    ("generate synthetic source systems", ("data", "generate")),
    ("ingest: validate, quarantine, resolve identities", ("ingest",)),
    ("build point-in-time features", ("features", "build")),
    ("register the Feast repo", ("features", "apply")),
    ("materialize the online store", ("features", "materialize")),
    ("train, evaluate, register and gate all models", ("train",)),
    ("fit the tag catalog's cut points", ("tags", "fit")),
    ("score and tag every customer, queue changes for the CRM", ("score",)),
    ("deliver the outbox to the CRM", ("crm", "sync")),
    ("what the CRM now holds", ("crm", "status")),
)


# What Persona writes under its data directory; a folder holding anything else is not ours to delete.
OWNED = {"raw", "clean", "features", "feast", "mlflow", "tags", "state", "scores", "bench", "dashboard"}


def _start_fresh(data_dir: Path) -> None:
    """Remove a previous demo's data so every run tells the same story (the CRM, the tag store and the
    outbox must start together: a new CRM with an old tag store would receive nothing)."""
    if not data_dir.exists():
        return
    foreign = sorted(p.name for p in data_dir.iterdir() if p.name not in OWNED)
    if foreign:
        raise click.UsageError(
            f"{data_dir} holds {', '.join(foreign)}, which Persona did not write; "
            "point PERSONA_DATA_DIR elsewhere or use --keep"
        )
    shutil.rmtree(data_dir)


def _command(ctx: click.Context, path: tuple[str, ...]) -> click.Command:
    command: click.Command = ctx.find_root().command
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, name)
        if found is None:
            raise click.UsageError(f"the CLI has no command {' '.join(path)!r}")
        command = found
    return command


def _show_crm(settings) -> None:  # type: ignore[no-untyped-def]
    """What the embedded CRM now holds: Persona's tags on the CRM's own contact records."""
    if settings.crm.connector != "sql":
        return
    import sqlalchemy as sa

    engine = sa.create_engine(settings.url(settings.crm.url))
    with engine.connect() as conn:
        if "persona_tags" not in sa.inspect(conn).get_table_names():
            click.echo("the CRM holds no Persona tags yet")
            return
        contacts, customers, rows = conn.execute(
            sa.text(
                "select count(distinct contact_id), count(distinct customer_id), count(*) from persona_tags"
            )
        ).one()
        click.secho(
            f"\nthe CRM ({settings.crm.url.split('/')[-1]}) now holds {rows:,} Persona tag values on "
            f"{contacts:,} contact records ({customers:,} customers)",
            bold=True,
        )
        sample = conn.execute(
            sa.text(
                "select t.contact_id, c.region, t.crm_field, t.value from persona_tags t "
                "join contacts c on c.contact_id = t.contact_id "
                "where t.crm_field in ('persona_lifecycle_stage', 'persona_churn_risk', 'persona_persona') "
                "order by t.contact_id, t.crm_field limit 9"
            )
        ).all()
    for contact_id, region, field, value in sample:
        click.echo(f"  contact {contact_id} ({region}): {field} = {value}")


@click.command("demo")
@click.option(
    "--customers", type=int, default=None, help="Persons to generate (default: generator.customers)."
)
@click.option("--seed", type=int, default=None, help="Generator seed (default: generator.seed).")
@click.option(
    "--keep", is_flag=True, help="Keep the previous run's data (default: start from a clean data dir)."
)
@click.pass_context
def demo_cmd(ctx: click.Context, customers: int | None, seed: int | None, keep: bool) -> None:
    """Run the whole pipeline on embedded defaults: sources -> features -> Feast -> models -> tags -> CRM."""
    settings = settings_from(ctx)
    if not keep:
        _start_fresh(settings.data_dir)
    extra = {
        ("data", "generate"): {
            "customers": customers or settings.generator.customers,
            "seed": seed if seed is not None else settings.generator.seed,
            "force": keep,
        },
        ("train",): {"kind": "all"},
        ("score",): {"score_all": True, "write_back": True},
    }
    started = time.monotonic()
    click.secho(f"persona demo: data directory {settings.data_dir.resolve()}", bold=True)
    for number, (title, path) in enumerate(STEPS, start=1):
        click.secho(f"\n[{number}/{len(STEPS)}] {title}  (persona {' '.join(path)})", fg="cyan", bold=True)
        step_started = time.monotonic()
        ctx.invoke(_command(ctx, path), **extra.get(path, {}))
        click.echo(f"  done in {time.monotonic() - step_started:.1f}s")
    _show_crm(settings)
    click.secho(f"\ndemo finished in {time.monotonic() - started:.0f}s", fg="green", bold=True)
    click.echo("next: `make ui` for the MLflow runs; `PERSONA_API_KEYS=... persona serve` for the API")


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(demo_cmd)

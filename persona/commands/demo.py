"""CLI: `persona run`, the whole pipeline on the configured sources, sources to CRM; `persona demo`, the
same on synthetic data it generates first (what `make demo` runs).

`persona --config my.yaml demo` with your own sources (orders not at the generator's default path) runs
on them: nothing synthetic is generated, so the one-liner of a dataset mapping is the real pipeline.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path

import click

from core.errors import PersonaError
from core.logs import reopen_log_file
from persona.commands._common import settings_from

GENERATE = ("generate synthetic source systems", ("data", "generate"))
PIPELINE = (
    ("ingest: validate, quarantine, resolve identities", ("ingest",)),
    ("build point-in-time features", ("features", "build")),
    ("register the Feast repo", ("features", "apply")),
    ("materialize the online store", ("features", "materialize")),
    ("train, evaluate, register and gate every model the sources allow", ("train",)),
    ("fit the tag catalog's cut points", ("tags", "fit")),
    ("score and tag every customer, queue changes for the CRM", ("score",)),
    ("deliver the outbox to the CRM", ("crm", "sync")),
    ("what the CRM now holds", ("crm", "status")),
)
# The next day of the same shop, taken in without training (issue 16).
SECOND_DAY = (
    ("a second day of orders", ("data", "generate"), {"continue_": True, "days": 1}),
    ("refresh: the new day -> features -> scores -> due tags -> CRM", ("refresh",), {}),
)
STEPS = (GENERATE, *PIPELINE, *SECOND_DAY)
# Where `persona data generate` writes the orders: a config pointing elsewhere brings its own data.
GENERATED_ORDERS = "{data_dir}/raw/orders.csv.gz"


# What Persona writes under its data directory; a folder holding anything else is not ours to delete.
OWNED = {
    "crm",
    "raw",
    "clean",
    "features",
    "feast",
    "mlflow",
    "tags",
    "state",
    "scores",
    "bench",
    "dashboard",
    "logs",
    "campaigns",
}
# The demo's campaign: the shipped win-back test, started the day after the generated data ends.
DEMO_CAMPAIGN = "winback"


def _prepare(data_dir: Path, *, fresh: bool) -> None:
    """The demo starts from an empty data dir (the CRM, the tag store and the outbox must start together:
    a new CRM with an old tag store would receive nothing). An existing one is removed only with
    --fresh, and only if Persona wrote everything in it."""
    # logs are no run's state (a `make test` before the demo leaves only them): they stay and grow
    if not data_dir.exists() or all(p.name == "logs" for p in data_dir.iterdir()):
        return
    if not fresh:
        raise PersonaError(
            f"data directory {data_dir.resolve()} already holds a previous run",
            hint="`persona demo --fresh` replaces it (`make demo FRESH=1`), or point PERSONA_DATA_DIR "
            "at a new folder",
        )
    foreign = sorted(p.name for p in data_dir.iterdir() if p.name not in OWNED)
    if foreign:
        raise PersonaError(
            f"{data_dir.resolve()} holds {', '.join(foreign)}, which Persona did not write: not deleting it",
            hint="point PERSONA_DATA_DIR at another folder",
        )
    shutil.rmtree(data_dir)
    reopen_log_file()  # its logs/ folder went with it


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
        shown = (
            "('persona_lifecycle_stage', 'persona_churn_risk', 'persona_persona', 'persona_value_tier', "
            "'persona_next_best_category')"
        )
        if "contacts" in sa.inspect(conn).get_table_names():  # the demo's CRM: show the region too
            query = (
                "select t.contact_id, c.region, t.crm_field, t.value from persona_tags t "
                "join contacts c on c.contact_id = t.contact_id "
                f"where t.crm_field in {shown} order by t.contact_id, t.crm_field limit 15"
            )
        else:
            query = (
                "select contact_id, null, crm_field, value from persona_tags "
                f"where crm_field in {shown} order by contact_id, crm_field limit 15"
            )
        sample = conn.execute(sa.text(query)).all()
    for contact_id, region, field, value in sample:
        click.echo(f"  record {contact_id}" + (f" ({region})" if region else "") + f": {field} = {value}")


def _run_steps(ctx: click.Context, settings, steps, extra, *, campaign: bool = False) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    click.secho(f"persona: data directory {settings.data_dir.resolve()}", bold=True)
    for number, (title, path, *own) in enumerate(steps, start=1):
        click.secho(f"\n[{number}/{len(steps)}] {title}  (persona {' '.join(path)})", fg="cyan", bold=True)
        step_started = time.monotonic()
        ctx.invoke(_command(ctx, path), **(own[0] if own else extra.get(path, {})))
        click.echo(f"  done in {time.monotonic() - step_started:.1f}s")
    _show_crm(settings)
    if campaign:
        _run_campaign(ctx, settings)
    click.secho(f"\nfinished in {time.monotonic() - started:.0f}s", fg="green", bold=True)
    click.echo("next: `make ui` for the MLflow runs; `PERSONA_API_KEYS=... persona serve` for the API")


def _run_campaign(ctx: click.Context, settings) -> None:  # type: ignore[no-untyped-def]
    """The demo's A/B test: create the win-back campaign on the high-churn-risk audience the day after
    the data ends, assign it, deliver the assignment to the CRM, let the generator's simulated outcomes
    arrive in the raw orders, re-ingest through the window's end and print the report."""
    from datetime import timedelta

    import yaml

    from configs.campaign import CAMPAIGNS_DIR
    from features.clock import clean_as_of

    started = time.monotonic()
    spec = yaml.safe_load((CAMPAIGNS_DIR / f"{DEMO_CAMPAIGN}.yaml").read_text(encoding="utf-8"))
    start = clean_as_of(settings).date() + timedelta(days=1)
    window = int(spec["outcome"]["window_days"])
    spec.update(start=start.isoformat(), end=(start + timedelta(days=window)).isoformat())
    path = settings.data_dir / "campaigns" / f"{DEMO_CAMPAIGN}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    end = start + timedelta(days=window)
    steps = (
        (
            "create the campaign: audience, power",
            ("campaign", "create"),
            {"name": DEMO_CAMPAIGN, "file": str(path)},
        ),
        ("assign it: arms stored, CRM tag queued", ("campaign", "assign"), {"name": DEMO_CAMPAIGN}),
        ("deliver the assignment to the CRM", ("crm", "sync"), {}),
        (
            "the generator's simulated outcomes arrive",
            ("data", "campaign-outcomes"),
            {"campaign": DEMO_CAMPAIGN, "seed": None, "raw": None},
        ),
        (
            "re-ingest through the window's end",
            ("ingest",),
            {"as_of": datetime(end.year, end.month, end.day)},
        ),
        (
            "the campaign's report",
            ("campaign", "report"),
            {"name": DEMO_CAMPAIGN, "html_path": None, "as_json": False},
        ),
    )
    for number, (title, command, args) in enumerate(steps, start=1):
        click.secho(
            f"\n[campaign {number}/{len(steps)}] {title}  (persona {' '.join(command)})", fg="cyan", bold=True
        )
        ctx.invoke(_command(ctx, command), **args)
        if command == ("campaign", "assign") and not _assigned(settings, DEMO_CAMPAIGN):
            click.echo("  nobody is at high churn risk in this small company: the campaign stops here")
            break
    click.echo(f"  campaign done in {time.monotonic() - started:.1f}s")


def _assigned(settings, name: str) -> int:  # type: ignore[no-untyped-def]
    from artifacts.campaigns import assignments, read_engine

    engine = read_engine(settings)
    return 0 if engine is None else len(assignments(engine, name))


_PIPELINE_ARGS = {("train",): {"kind": "all"}, ("score",): {"score_all": True, "write_back": True}}


@click.command("demo")
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=None,
    help="Persons to generate (default: generator.customers).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=None, help="Generator seed (default: generator.seed)."
)
@click.option(
    "--fresh", is_flag=True, help="Delete the data dir of a previous run first (default: refuse to)."
)
@click.pass_context
def demo_cmd(ctx: click.Context, customers: int | None, seed: int | None, fresh: bool) -> None:
    """The whole pipeline on synthetic data: generate -> sources -> features -> Feast -> models -> tags
    -> CRM, then a win-back A/B test on the high-churn-risk customers whose simulated outcomes arrive
    and are reported. With a config naming your own orders source, runs on your sources instead (like `run`)."""
    settings = settings_from(ctx)
    own = settings.sources.orders.path != GENERATED_ORDERS or bool(settings.sources.orders.url)
    _prepare(settings.data_dir, fresh=fresh)
    if own:
        click.echo("sources.orders is your own data: running the pipeline on it (nothing is generated)")
        _run_steps(ctx, settings, PIPELINE, _PIPELINE_ARGS)
        return
    # The synthetic world spans two years: too short for the default 365-day value horizon (see
    # generator.demo_clv_horizon_days), so the demo's commands train and serve value on a shorter one.
    ctx.find_root().obj["overrides"] = {
        "training": {"clv_horizon_days": settings.generator.demo_clv_horizon_days}
    }
    settings = settings_from(ctx)
    extra = {
        ("data", "generate"): {
            "customers": customers or settings.generator.customers,
            "seed": seed if seed is not None else settings.generator.seed,
        },
        **_PIPELINE_ARGS,
    }
    _run_steps(ctx, settings, STEPS, extra, campaign=True)


@click.command("run")
@click.pass_context
def run_cmd(ctx: click.Context) -> None:
    """The whole pipeline on the configured sources: ingest -> features -> Feast -> train every model
    the sources allow -> tag cut points -> score everyone -> deliver to the CRM."""
    _run_steps(ctx, settings_from(ctx), PIPELINE, _PIPELINE_ARGS)


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(demo_cmd)
    cli.add_command(run_cmd)

"""CLI: `persona tags list | check | fit | explain`: the tag catalog, its cut points and tag history."""

from __future__ import annotations

import click

from persona.commands._common import print_table, settings_from


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.group("tags")
    def tags() -> None:
        """The tag catalog (configs/tags.yaml), its fitted cut points and each customer's tag history."""

    @tags.command("list")
    @click.option("--wide", is_flag=True, help="Full descriptions (default: one line each).")
    @click.pass_context
    def list_tags(ctx: click.Context, wide: bool) -> None:
        """Show the catalog: key, kind, type, cadence, CRM field, version, description."""
        from artifacts.catalog import load_catalog

        settings = settings_from(ctx)
        catalog = load_catalog(settings)
        print_table(
            (
                {
                    "key": t.key,
                    "kind": t.kind,
                    "type": t.value_type,
                    "priority": t.priority,
                    "sources": ",".join(t.sources) or "-",
                    "cadence": t.cadence,
                    "crm_field": t.crm_field,
                    "version": t.version,
                    "description": " ".join(t.description.split()),
                }
                for t in catalog.tags
            ),
            ["key", "kind", "type", "priority", "sources", "cadence", "crm_field", "version", "description"],
            title=f"tag catalog {catalog.source} (version {catalog.version}): {len(catalog.tags):,} tags",
            wide=wide,
            long_columns=["description"],
            numeric_columns=["version"],
        )
        for note in catalog.notes:
            click.echo(f"note: {note}")
        if catalog.cutpoints:
            fitted = ", ".join(f"{c.name} ({c.feature}, {c.bins} bins)" for c in catalog.cutpoints.values())
            click.echo(f"cut points fitted at training time: {fitted}")

    @tags.command("check")
    @click.option(
        "--feast/--no-feast",
        default=True,
        show_default=True,
        help="Check names against the Feast FeatureServices (else the contract's feature list).",
    )
    @click.pass_context
    def check_tags(ctx: click.Context, feast: bool) -> None:
        """Check the catalog (syntax, names, types, duplicates) without changing anything."""
        from artifacts.catalog import load_catalog

        settings = settings_from(ctx)
        catalog = load_catalog(settings, store=settings if feast else None)
        against = (
            f"FeatureServices {', '.join(settings.feast.services)}" if feast else "the contract's features"
        )
        click.echo(
            f"{catalog.source}: {len(catalog.tags)} tags OK (names checked against {against} + model outputs)"
        )

    @tags.command("fit")
    @click.pass_context
    def fit_tags(ctx: click.Context) -> None:
        """Fit the catalog's quantile cut points on the latest feature snapshot and save them."""
        from artifacts.catalog import load_catalog
        from models.tag_engine import read_cutpoints
        from training.tag_cutpoints import fit_and_save

        settings = settings_from(ctx)
        catalog = load_catalog(settings)
        if not catalog.cutpoints:
            click.echo("the catalog declares no cut points: nothing to fit")
            return
        path = fit_and_save(settings, catalog=catalog)
        payload = read_cutpoints(path)
        click.echo(
            f"cut points saved to {path} (snapshot {payload['snapshot']}, catalog {payload['catalog_version']})"
        )
        for name, cut in payload["cutpoints"].items():
            edges = ", ".join(f"{e:g}" for e in cut["edges"])
            click.echo(f"  {name:<12} {cut['feature']:<18} edges [{edges}] from {cut['rows']:,} customers")

    @tags.command("explain")
    @click.argument("customer_id")
    @click.option("--changes", "limit", type=int, default=None, help="How many recent changes to show.")
    @click.pass_context
    def explain(ctx: click.Context, customer_id: str, limit: int | None) -> None:
        """Show a customer's tags, the inputs and rule/model version behind each, and the last changes.

        CUSTOMER_ID is Persona's id (P0123456789ab) or the business's own key of the customer: a CRM
        contact id, an orders customer number or a lead id."""
        from artifacts.catalog import load_catalog
        from core.errors import PersonaError
        from serving.record_keys import RecordKeys
        from serving.tagging import open_tag_store

        settings = settings_from(ctx)
        asked = customer_id
        keys = RecordKeys(
            settings.path("{data_dir}/clean/identity_map.parquet"), record_key=settings.crm.record_key
        )
        customer_id = keys.customer_for([asked]).get(asked, asked)
        catalog = load_catalog(settings)
        store = open_tag_store(settings, catalog)
        current = store.current(customer_id)
        if not current:
            raise PersonaError(
                f"no tags recorded for customer {asked}",
                hint="give Persona's customer id (P0123456789ab) or a CRM contact id, customer number or "
                "lead id from the sources; customers who withdrew consent are never tagged",
            )
        order = {k: i for i, k in enumerate(catalog.keys)}
        current.sort(key=lambda c: order.get(c.tag, len(order)))
        records = keys.records_for([customer_id])[customer_id]
        known_as = f" (CRM record {', '.join(records)})" if records and records != [customer_id] else ""
        click.echo(f"customer {customer_id}{known_as}: {len(current):,} tags")
        for c in current:
            value = "(unset)" if c.value is None else c.value
            click.echo(
                f"  {c.tag:<20} = {value:<20} since {c.updated_at:%Y-%m-%d %H:%M} UTC  by {c.produced_by}"
            )
            if c.inputs:
                click.echo(f"  {'':<20}   inputs: {_inputs(c.inputs)}")
        history = store.history(customer_id, limit=limit or settings.tags.explain_history)
        click.echo(f"last {len(history):,} change(s):")
        for h in history:
            old = "(unset)" if h.old_value is None else h.old_value
            new = "(unset)" if h.new_value is None else h.new_value
            click.echo(f"  {h.changed_at:%Y-%m-%d %H:%M} {h.tag:<20} {old} -> {new}  by {h.produced_by}")
            if h.inputs:
                click.echo(f"  {'':<16} {'':<20} inputs: {_inputs(h.inputs)}")


def _inputs(values: dict[str, object]) -> str:
    def show(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        return "null" if v is None else str(v)

    return ", ".join(f"{k}={show(v)}" for k, v in values.items())

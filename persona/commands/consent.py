"""CLI: `persona consent withdraw ID | status` and `persona forget ID` (right to be forgotten)."""

from __future__ import annotations

import click

from persona.commands._common import settings_from


def _echo_enforced(report) -> None:  # type: ignore[no-untyped-def]
    click.echo(
        f"  online rows deleted {report.online_rows_deleted}, feature rows deleted "
        f"{report.feature_rows_deleted}, recommender history rows deleted {report.history_rows_deleted}, "
        f"CRM fields to clear queued {report.crm_fields_cleared}"
    )
    for note in report.notes:
        click.echo(f"  {note}")


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.group()
    def consent() -> None:
        """Consent to profiling: withdraw a customer everywhere, show the consent list."""

    @consent.command("withdraw")
    @click.argument("customer")
    @click.option("--actor", default=None, help="Who asked (recorded in the audit; default cli:<user>).")
    @click.pass_context
    def withdraw_cmd(ctx: click.Context, customer: str, actor: str | None) -> None:
        """Withdraw CUSTOMER (Persona id or the CRM contact id): no more profiling or tags, online rows
        deleted, the CRM fields' clearing queued; the running service answers consent_withdrawn within
        seconds, and every later ingest keeps the withdrawal."""
        from serving.consent import withdraw

        customer_id, report = withdraw(settings_from(ctx), customer, actor=actor)
        click.echo(f"consent withdrawn for customer {customer_id}")
        _echo_enforced(report)
        click.echo("the CRM is cleared by the service's dispatcher or `persona crm sync`")

    @consent.command("status")
    @click.pass_context
    def status_cmd(ctx: click.Context) -> None:
        """How many customers are withdrawn, by source (crm, cli, forget), and how many await clearing."""
        import sqlalchemy as sa

        from core.statedb import make_state_engine
        from features import consent as consent_list

        settings = settings_from(ctx)
        engine = make_state_engine(settings.url(settings.state_url))
        consent_list.create_schema(engine)
        t = consent_list.withdrawals
        with engine.connect() as conn:
            by_source = dict(conn.execute(sa.select(t.c.source, sa.func.count()).group_by(t.c.source)).all())
        waiting = len(consent_list.unenforced(engine))
        parts = ", ".join(f"{by_source.get(s, 0)} {s}" for s in consent_list.SOURCES)
        click.echo(f"withdrawn: {sum(by_source.values())} ({parts}); awaiting enforcement: {waiting}")

    @cli.command("forget")
    @click.argument("customer")
    @click.option("--actor", default=None, help="Who asked (recorded in the audit; default cli:<user>).")
    @click.pass_context
    def forget_cmd(ctx: click.Context, customer: str, actor: str | None) -> None:
        """Right to be forgotten for CUSTOMER (Persona id or the CRM contact id): withdraw, clear the CRM
        fields, erase features, online rows, tags and tag history; an audit record without personal data."""
        from serving.consent import forget

        report = forget(settings_from(ctx), customer, actor=actor)
        erased = ", ".join(f"{k} {v}" for k, v in report.erased.items())
        click.echo(f"forgotten: customer {report.customer_id} (audit subject {report.subject_hash[:16]}...)")
        click.echo(f"  erased: {erased}")
        click.echo("the CRM is cleared by the service's dispatcher or `persona crm sync`")


def enforce_pending(settings) -> None:  # type: ignore[no-untyped-def]
    """After ingest, before scoring: deal with withdrawals not enforced yet (e.g. new in the CRM)."""
    from serving.consent import enforce

    report = enforce(settings)
    if report.customers:
        click.echo(f"consent: {report.customers} newly withdrawn customer(s) enforced")
        _echo_enforced(report)

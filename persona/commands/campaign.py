"""CLI: `persona campaign create | assign | report`: A/B tests (the uplift model: `persona train uplift`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from persona.commands._common import settings_from


def _spec_for(name: str, file: str | None):
    from configs.campaign import CAMPAIGNS_DIR, load_campaign

    spec = load_campaign(file or (CAMPAIGNS_DIR / f"{name}.yaml"))
    if spec.name != name:
        from configs.campaign import CampaignSpecError

        raise CampaignSpecError(f"name: the file declares campaign {spec.name!r}, not {name!r}", field="name")
    return spec


def _report(settings, name: str) -> dict:
    """A stored campaign's report; a finished campaign imported through configs/campaigns/NAME.yaml
    (`source:`) is read from its file."""
    from configs.campaign import CAMPAIGNS_DIR, load_campaign
    from serving.campaigns import campaign_report

    path = CAMPAIGNS_DIR / f"{name}.yaml"
    if path.is_file():
        spec = load_campaign(path)
        if spec.source is not None:
            from features.campaign_source import read_campaign_source
            from models.campaign_report import imported_report

            return imported_report(spec, read_campaign_source(spec))
    return campaign_report(settings, name)


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.group("campaign")
    def campaign() -> None:
        """A/B-tested campaigns: audience, assignment written to the CRM, effects, uplift targeting."""

    @campaign.command("create")
    @click.argument("name")
    @click.option(
        "--file",
        "file",
        type=click.Path(dir_okay=False),
        help="Campaign YAML (default configs/campaigns/NAME.yaml).",
    )
    @click.pass_context
    def create(ctx: click.Context, name: str, file: str | None) -> None:
        """Validate the campaign, size its audience, print power / minimum detectable effect, store it."""
        from artifacts.catalog import load_catalog
        from serving.campaigns import create_campaign

        settings = settings_from(ctx)
        spec = _spec_for(name, file)
        made = create_campaign(settings, spec, catalog=load_catalog(settings))
        click.echo(
            f"campaign {name}: audience {made.audience_size:,} customers ({made.withdrawn_excluded} withdrawn excluded)"
        )
        click.echo("  arms: " + ", ".join(f"{a} ~{n:,}" for a, n in made.arms.items()))
        click.echo(
            f"  {spec.outcome.label} in {spec.outcome.window_days} days before the start: mean {made.baseline_mean:.4g} "
            f"(sd {made.baseline_sd:.4g}); data as of {made.as_of.date()}"
        )
        click.echo(
            f"  minimum detectable effect at power {spec.power:.0%}, alpha {spec.alpha}: {made.mde:.4g}"
        )
        if made.power is not None:
            flag = (
                ""
                if made.power >= spec.power
                else "  (under-powered: widen the audience or the control share)"
            )
            click.echo(f"  power to detect {spec.minimum_effect:g}: {made.power:.2f}{flag}")

    @campaign.command("assign")
    @click.argument("name")
    @click.pass_context
    def assign(ctx: click.Context, name: str) -> None:
        """Assign the audience to arms (idempotent) and queue the CRM tag persona_campaign_NAME."""
        from artifacts.catalog import load_catalog
        from serving.campaigns import assign_campaign

        settings = settings_from(ctx)
        out = assign_campaign(settings, name, catalog=load_catalog(settings))
        click.echo(
            f"campaign {name}: {out['new']:,} newly assigned, {out['total']:,} in all "
            f"({', '.join(f'{a} {n:,}' for a, n in sorted(out['by_arm'].items()))}); {out['queued']:,} tag changes queued for the CRM"
        )

    @campaign.command("report")
    @click.argument("name")
    @click.option(
        "--html", "html_path", type=click.Path(dir_okay=False), help="Also write the report as HTML here."
    )
    @click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the report as JSON (what GET /v1/campaigns/NAME returns).",
    )
    @click.pass_context
    def report(ctx: click.Context, name: str, html_path: str | None, as_json: bool) -> None:
        """Effects per arm against control, intervals, sample-ratio check, power, breakdowns."""
        from models.campaign_report import render_html, render_text

        data = _report(settings_from(ctx), name)
        click.echo(json.dumps(data, indent=2, default=str) if as_json else render_text(data))
        if html_path:
            Path(html_path).write_text(render_html(data), encoding="utf-8")
            click.echo(f"wrote {html_path}", err=True)

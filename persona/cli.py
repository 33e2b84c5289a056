"""`persona` command line. Commands live in `persona/commands/<area>.py`; heavy imports stay inside them."""

from __future__ import annotations

import os
import sys
import traceback

import click

from core.errors import USER_ERRORS
from persona.commands import campaign, crm, data, demo, features, ingest, refresh, serve, tags, train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="PERSONA_CONFIG",
    help="YAML file merged over configs/base.yaml (env: PERSONA_CONFIG).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Persona: customer profiles, scores and tags for your CRM."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


for module in (data, ingest, features, train, refresh, tags, serve, crm, campaign, demo):
    module.register(cli)


def main(argv: list[str] | None = None) -> int:
    from core.redact import mask_urls

    """Entry point: expected errors print one clear message, never a bare traceback."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        cli.main(args=argv, prog_name="persona", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except USER_ERRORS as exc:
        click.secho(mask_urls(f"error: {exc}"), fg="red", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # the last line of defence: one line, the traceback only on request
        if os.environ.get("PERSONA_DEBUG"):
            traceback.print_exc()
        click.secho(mask_urls(f"internal error: {type(exc).__name__}: {exc}"), fg="red", err=True)
        click.echo("run again with PERSONA_DEBUG=1 for the traceback, and please report it", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

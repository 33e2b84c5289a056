"""CLI: `persona serve` (the scoring service) and `persona score --all` (batch scoring)."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import click

from configs.settings import PROJECT_ROOT
from core.errors import PersonaError
from persona.commands._common import settings_from
from serving.auth import ApiKeyError, load_api_keys


@click.command("serve")
@click.option("--host", default=None, help="Interface to bind (default: serving.host, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port (default: serving.port, 3000)."
)
@click.pass_context
def serve_cmd(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Start the scoring service (BentoML) that the CRM calls. Needs PERSONA_API_KEYS."""
    settings = settings_from(ctx)
    try:
        load_api_keys()
    except ApiKeyError as exc:
        raise PersonaError(str(exc)) from None
    host = host or settings.serving.host
    port = port or settings.serving.port
    _check_port_free(host, port)
    bentoml_bin = Path(sys.executable).with_name("bentoml")
    env = dict(os.environ)
    env["PERSONA_DATA_DIR"] = str(settings.data_dir.resolve())
    if ctx.obj.get("config_path"):
        env["PERSONA_CONFIG"] = str(Path(ctx.obj["config_path"]).resolve())
    click.echo(f"persona: serving on http://{host}:{port} (docs at /docs, readiness at /readyz)", err=True)
    args = [
        str(bentoml_bin),
        "serve",
        "serving.service:PersonaService",
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(PROJECT_ROOT),
    ]
    os.execve(args[0], args, env)  # replace this process: signals go straight to the server


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line if the port is taken: BentoML would otherwise print a traceback per process."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PersonaError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will bind it
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PersonaError(
                    f"port {port} on {host} is already in use: stop the other server or choose "
                    "another with --port (or serving.port)"
                ) from None
            raise PersonaError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command("score")
@click.option("--all", "score_all", is_flag=True, required=True, help="Score every customer.")
@click.option(
    "--write-back/--no-write-back",
    default=True,
    show_default=True,
    help="Queue changed tags in the outbox for the CRM.",
)
@click.option(
    "--sync/--no-sync", default=False, show_default=True, help="Deliver the outbox to the CRM after scoring."
)
@click.pass_context
def score_cmd(ctx: click.Context, score_all: bool, write_back: bool, sync: bool) -> None:
    """Batch-score every customer from the feature store, in vectorised chunks, with progress."""
    from persona.commands.consent import enforce_pending
    from serving.batch import print_summary, score_everyone

    settings = settings_from(ctx)
    enforce_pending(settings)  # a withdrawal found by the last ingest is cleared before anyone is scored
    summary = score_everyone(settings, write_back=write_back)
    print_summary(summary)
    from serving.dashboard.summary import write_summaries

    write_summaries(settings)  # the dashboard's numbers of these scores, so no page computes them
    if sync:
        from serving.dispatcher import make_dispatcher

        stats = make_dispatcher(settings).run_until_empty()
        click.echo(f"CRM sync: {stats}")


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(serve_cmd)
    cli.add_command(score_cmd)

"""CLI: tags commands (owned by the stage that implements them)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

"""Helpers shared by CLI commands."""

from __future__ import annotations

import click

from configs.settings import Settings, load_settings


def settings_from(ctx: click.Context, **overrides: object) -> Settings:
    """Load settings once per command from the --config given to the group."""
    return load_settings(ctx.obj.get("config_path") if ctx.obj else None, **overrides)

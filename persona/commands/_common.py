"""Helpers shared by CLI commands."""

from __future__ import annotations

import click

from configs.settings import Settings, load_settings


def settings_from(ctx: click.Context, **overrides: object) -> Settings:
    """Load settings once per command from the --config given to the group (plus the overrides a parent
    command such as `persona demo` set for the commands it runs)."""
    obj = ctx.find_root().obj or {}
    merged = {**obj.get("overrides", {}), **overrides}
    return load_settings(obj.get("config_path"), **merged)

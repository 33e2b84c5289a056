"""Helpers shared by CLI commands: settings, tables, and the data dir a read-only command needs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from configs.settings import Settings, load_settings
from core.errors import PersonaError

NARROW_WIDTH = 160  # columns when stdout is not a terminal (pipes, CI logs) and --wide is not given


def settings_from(ctx: click.Context, **overrides: object) -> Settings:
    """Load settings once per command from the --config given to the group (plus the overrides a parent
    command such as `persona demo` set for the commands it runs)."""
    obj = ctx.find_root().obj or {}
    merged = {**obj.get("overrides", {}), **overrides}
    return load_settings(obj.get("config_path"), **merged)


def require_data_dir(settings: Settings) -> Path:
    """The data dir, which a read-only command must find (it never creates one)."""
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise PersonaError(
            f"data directory {data_dir.resolve()} does not exist",
            hint="run `persona demo` (or the pipeline's steps) first, or point PERSONA_DATA_DIR at yours",
        )
    return data_dir


def sqlite_file(url: str) -> Path | None:
    """The file behind a `sqlite:///` URL (None for other databases)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def cell(value: Any) -> str:
    """A table cell: thousands separators for counts, 4 decimals for measures, blank for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        return f"{float(value):,.4f}"
    return str(value)


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    wide: bool = False,
    long_columns: Sequence[str] = (),
    numeric_columns: Sequence[str] = (),
) -> None:
    """Print rows as a rich table. `long_columns` are cut to one line unless `wide` (then in full)."""
    if title:
        click.echo(title)
    table = Table(header_style="bold", show_edge=False, pad_edge=False)
    for name in columns:
        if name in long_columns and not wide:
            table.add_column(name, max_width=60, no_wrap=True, overflow="ellipsis")
        else:
            justify = "right" if name in numeric_columns else "left"
            table.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(name)) for name in columns))
    console = Console(width=100_000 if wide else None, soft_wrap=False)
    if not console.is_terminal and not wide:
        console = Console(width=NARROW_WIDTH)
    console.print(table)

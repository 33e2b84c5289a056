"""One module per settings section, so each stage owns its own configuration."""

from __future__ import annotations

from typing import Any


def unique_names(rules: list[Any], what: str) -> list[Any]:
    """`rules` unchanged when their `name`s are unique; else a ValueError naming the duplicates."""
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{what} names must be unique: {', '.join(dup)}")
    return rules

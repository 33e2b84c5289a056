"""Snapshot dates and the point-in-time spine shared by every feature table.

A snapshot is a calendar date taken at 00:00 UTC; features at a snapshot see only rows whose timestamp
is strictly before it. The spine of (customer, snapshot) rows is `features.pit.spine` (Ibis).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from configs.sections.features import FeaturesConfig


def snapshot_dates(config: FeaturesConfig, override: Iterable[date] | None = None) -> list[pd.Timestamp]:
    """The snapshots to build, sorted and de-duplicated, as UTC midnight timestamps.

    `override` (e.g. the CLI's `--snapshot`) wins; then the explicit `config.snapshots`; else every
    `config.snapshot_every_days` from `config.first_snapshot` up to and including `config.last_snapshot`
    (the last one only when it falls on the grid).
    """
    chosen = list(override or [])
    if not chosen:
        chosen = list(config.snapshots)
    if not chosen:
        assert config.first_snapshot and config.last_snapshot  # the config validator guarantees it
        step = timedelta(days=config.snapshot_every_days)
        day = config.first_snapshot
        while day <= config.last_snapshot:
            chosen.append(day)
            day += step
    return [pd.Timestamp(d).tz_localize("UTC").as_unit("us") for d in sorted(set(chosen))]

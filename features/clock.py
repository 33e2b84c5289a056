"""The data's clock: every run has an `as_of`, and later stages read it instead of the wall clock.

`as_of` is given (`persona ingest --as-of`, `sources.as_of`) or derived from the sources: the latest
timestamp of their activity (`derive_as_of`). A source whose clock was wrong for a few rows (dates typed
a year ahead) must not move the data's end, so the derivation ignores a thin tail: days after the last
day with at least `DENSE_SHARE` of a typical day's rows, as long as that tail is at most `TAIL_SHARE` of
all rows. Such rows then lie after `as_of` + `sources.future_tolerance_hours` and are quarantined
(`timestamp_in_future`) like any other future-dated row.

Ingest writes `as_of` into `clean/ingest_report.json`; `persona features build` records it next to the
feature tables (`features/build_report.json`); materialization ends at it, so the Feast registry's
materialized end is the `as_of` serving judges staleness against.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.errors import SourceError

if TYPE_CHECKING:
    from configs.settings import Settings

US_PER_DAY = 86_400 * 1_000_000
DENSE_SHARE = 0.1  # a day with less than this share of a typical day's rows is not "still active"
TAIL_SHARE = 0.01  # at most this share of all rows may be set aside as a thin tail
BUILD_REPORT = "build_report.json"


def _epoch_us(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values, utc=True).dropna()
    return ts.dt.as_unit("us").astype("int64").to_numpy()


def derive_as_of(stamps: Mapping[str, pd.Series]) -> pd.Timestamp | None:
    """The latest timestamp of the sources' activity (UTC), ignoring a thin tail of stray future rows
    (see the module doc). `stamps` maps a name (`orders.order_ts`) to its parsed timestamps. None when
    there is no timestamp at all."""
    parts = [_epoch_us(s) for s in stamps.values()]
    us = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if not len(us):
        return None
    day = us // US_PER_DAY
    first = int(day.min())
    counts = np.bincount(day - first)
    typical = float(np.median(counts[counts > 0]))
    dense_days = np.flatnonzero(counts >= max(1.0, DENSE_SHARE * typical))
    end_us = (first + int(dense_days[-1]) + 1) * US_PER_DAY  # the end of the last dense day
    inside = us < end_us
    latest = int(us.max()) if (~inside).sum() > TAIL_SHARE * len(us) else int(us[inside].max())
    return pd.Timestamp(latest, unit="us", tz="UTC")


def check_as_of(as_of: pd.Timestamp, stamps: Mapping[str, pd.Series], *, tolerance: pd.Timedelta) -> None:
    """Raise SourceError when `as_of` (+ tolerance) is before every row of a source's timestamp column:
    the whole source would be quarantined as future-dated, which is a wrong `as_of`, not bad data."""
    limit = as_of + tolerance
    for name, values in stamps.items():
        present = pd.to_datetime(values, utc=True).dropna()
        if len(present) and (present > limit).all():
            source, column = name.split(".", 1)
            raise SourceError(
                f"source '{source}', column '{column}': as_of {as_of.isoformat()} is before every row "
                f"(the earliest is {present.min().isoformat()})",
                hint="check --as-of / sources.as_of",
            )


def as_utc(value: object) -> pd.Timestamp:
    """A timestamp in UTC at microsecond resolution (naive values count as UTC)."""
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).as_unit("us")


def clean_as_of(settings: Settings) -> pd.Timestamp:
    """The `as_of` `persona ingest` ran with (from `clean/ingest_report.json`)."""
    path = Path(settings.data_dir) / "clean" / "ingest_report.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["as_of"]
    except FileNotFoundError:
        raise SourceError(f"no clean data in {path.parent}", hint="run `persona ingest` first") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(
            f"{path}: no readable as_of ({type(exc).__name__})", hint="run `persona ingest` again"
        ) from None
    return as_utc(value)


def features_as_of(settings: Settings) -> pd.Timestamp:
    """The `as_of` of the feature tables (`features/build_report.json`, written by `persona features
    build`)."""
    path = settings.path(settings.feast.source_dir) / BUILD_REPORT
    try:
        return as_utc(json.loads(path.read_text(encoding="utf-8"))["as_of"])
    except FileNotFoundError:
        raise SourceError(
            f"no feature tables in {path.parent}", hint="run `persona features build`"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(
            f"{path}: no readable as_of ({type(exc).__name__})", hint="run `persona features build` again"
        ) from None

"""Snapshot dates and the point-in-time spine shared by every feature table.

A snapshot is a calendar date taken at 00:00 UTC; features at a snapshot see only rows whose timestamp
is strictly before it. The spine holds one row per (customer, snapshot) for customers who are known
before the snapshot (`first_seen_ts < snapshot`) and have not withdrawn consent to profiling.

Timestamps are handled as epoch microseconds (int64): integer arithmetic has no time-zone or
daylight-saving surprises, and a day is exactly `US_PER_DAY`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from configs.sections.features import FeaturesConfig

US_PER_DAY = 86_400 * 1_000_000
TS_DTYPE = "datetime64[us, UTC]"


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


def to_epoch_us(values: pd.Series) -> pd.Series:
    """A timestamp column as epoch microseconds (nullable Int64; NaT -> <NA>). Naive values count as UTC."""
    ts = pd.to_datetime(values, utc=True)
    out = pd.Series(ts.dt.as_unit("us").astype("int64"), index=values.index, dtype="Int64")
    return out.mask(ts.isna())


@dataclass(frozen=True)
class Spine:
    """The (customer, snapshot) rows every feature table has, in (snapshot, customer_id) order.

    `ids` are the customers who may be profiled, sorted; a customer's *code* is its position in `ids`
    (see `encode`). Arrays `customer_id`, `code`, `snapshot_us` (epoch microseconds) are row-aligned.
    """

    ids: pd.Index
    customer_id: np.ndarray
    code: np.ndarray
    snapshot_us: np.ndarray

    def __len__(self) -> int:
        return len(self.code)

    @property
    def snapshot_sec(self) -> np.ndarray:
        """Snapshots in whole epoch seconds (they are midnights, so exact)."""
        return self.snapshot_us // 1_000_000

    def encode(self, customer_ids: pd.Series) -> np.ndarray:
        """Codes of `customer_ids` (int64); -1 for a customer not profiled (unknown or withdrawn)."""
        values = customer_ids.to_numpy(dtype=object)
        if not pd.api.types.is_string_dtype(customer_ids):
            values = customer_ids.astype(str).to_numpy(dtype=object)
        return self.ids.get_indexer(values).astype("int64")

    def frame(self) -> pd.DataFrame:
        """`customer_id` and `snapshot_us` as a DataFrame (the first columns of every table)."""
        # an explicit object dtype: pandas would otherwise scan the ids for dates
        return pd.DataFrame(
            {"customer_id": pd.Series(self.customer_id, dtype=object), "snapshot_us": self.snapshot_us}
        )


def allowed_customers(customers: pd.DataFrame) -> pd.DataFrame:
    """Customers who may be profiled: `consent_profiling` is not False (null = never asked = allowed).

    Returns `customer_id` and `first_seen_us` (epoch microseconds, may be <NA> = never seen).
    """
    consent = customers["consent_profiling"].astype("boolean").fillna(True)
    kept = customers.loc[consent.to_numpy(dtype=bool)]
    return pd.DataFrame(
        {
            "customer_id": kept["customer_id"].astype(str).to_numpy(),
            "first_seen_us": to_epoch_us(kept["first_seen_ts"]).array,
        }
    )


def build_spine(customers: pd.DataFrame, snapshots: list[pd.Timestamp]) -> Spine:
    """One row per (allowed customer, snapshot) with `first_seen_ts < snapshot`, sorted by snapshot
    then customer id, so every feature table built on it shares one deterministic row order."""
    allowed = allowed_customers(customers).sort_values("customer_id", kind="stable")
    ids = pd.Index(allowed["customer_id"].to_numpy(dtype=object))
    first_seen = allowed["first_seen_us"].to_numpy(dtype="float64", na_value=np.nan)
    codes, snaps = [], []
    for snap in sorted(snapshots):  # one vectorised mask per snapshot (about 20), not per customer
        snap_us = int(snap.value // 1_000)
        known = np.flatnonzero(first_seen < snap_us)  # NaN (never seen) compares False
        codes.append(known)
        snaps.append(np.full(len(known), snap_us, dtype="int64"))
    code = np.concatenate(codes).astype("int64") if codes else np.zeros(0, dtype="int64")
    snapshot_us = np.concatenate(snaps) if snaps else np.zeros(0, dtype="int64")
    return Spine(ids=ids, customer_id=ids.to_numpy()[code], code=code, snapshot_us=snapshot_us)

"""Point-in-time window queries over per-customer timelines, vectorised with sorted keys.

A `Timeline` holds rows (orders, events, leads) of one kind, sorted by (customer code, time). Each
row gets the key `code * span + seconds since the timeline's first row`, so "rows of customer c
before time t" is one `np.searchsorted` for all (customer, snapshot) pairs at once: O((n + m) log n)
time and O(n + m) memory, with no join that copies every row once per snapshot.

Keys use whole seconds. Every query bound is a whole second (a snapshot is 00:00 UTC, windows are
whole days), and for such a bound `b`, `ts < b` holds exactly when `floor(ts to seconds) < b`, so the
strict "before the snapshot" rule is kept to the microsecond.

Window sums use per-customer running sums (each customer's rows summed in time order), so a value at
a snapshot depends only on that customer's rows before it: rows added later, or for other customers,
cannot change it, not even by floating-point rounding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import ValidationFailed

US_PER_SECOND = 1_000_000
_INT64_MAX = np.iinfo(np.int64).max


def seconds(ts_us: np.ndarray) -> np.ndarray:
    """Epoch microseconds floored to whole seconds (int64)."""
    return np.floor_divide(np.asarray(ts_us, dtype="int64"), US_PER_SECOND)


class Timeline:
    """Rows of one kind for many customers, sorted by (code, time[, tie-break]) for window queries.

    `codes` are customer codes in `[0, n_codes)`; `ts_us` epoch microseconds (no missing values);
    `tiebreak` orders rows of one customer at the same microsecond (e.g. lead ids), else input order.
    After construction, `self.order` maps sorted positions back to input rows.
    """

    def __init__(
        self,
        codes: np.ndarray,
        ts_us: np.ndarray,
        *,
        n_codes: int,
        tiebreak: np.ndarray | None = None,
        what: str = "rows",
    ) -> None:
        codes = np.asarray(codes, dtype="int64")
        ts_us = np.asarray(ts_us, dtype="int64")
        sec = seconds(ts_us)
        self.t0 = int(sec.min()) if len(sec) else 0
        self.span = (int(sec.max()) - self.t0 + 1) if len(sec) else 1
        if n_codes and self.span > _INT64_MAX // (n_codes + 1):
            raise ValidationFailed(
                f"{what}: timestamps span {self.span} seconds, too wide to index "
                f"{n_codes} customers; check for impossible dates"
            )
        keys = codes * self.span + (sec - self.t0)
        if tiebreak is None:
            # by time to the microsecond first, then (stable) by key: each customer's rows in time order
            by_time = np.argsort(ts_us, kind="stable")
            self.order = by_time[np.argsort(keys[by_time], kind="stable")]
        else:
            self.order = np.lexsort((tiebreak, ts_us, keys))
        self.keys = keys[self.order]
        self.codes = codes[self.order]
        self.ts_us = ts_us[self.order]

    def __len__(self) -> int:
        return len(self.keys)

    def position(self, codes: np.ndarray, bound_sec: np.ndarray | int) -> np.ndarray:
        """For each query: the sorted position just past the customer's rows with time < bound."""
        rel = np.clip(np.asarray(bound_sec, dtype="int64") - self.t0, 0, self.span)
        return np.searchsorted(self.keys, codes * self.span + rel, side="left")

    def start(self, codes: np.ndarray) -> np.ndarray:
        """For each query: the sorted position of the customer's first row."""
        return np.searchsorted(self.keys, codes * self.span, side="left")

    def count(self, codes: np.ndarray, lo_sec: np.ndarray | int, hi_sec: np.ndarray | int) -> np.ndarray:
        """Rows of each customer with `lo <= time < hi` (int64)."""
        return (self.position(codes, hi_sec) - self.position(codes, lo_sec)).astype("int64")

    def running_sum(self, values: np.ndarray) -> np.ndarray:
        """Per-customer running sums of `values` (given in input row order), with a leading 0.

        Entry `i + 1` is the sum of the customer's sorted rows up to and including row `i`.
        """
        ordered = pd.Series(np.asarray(values, dtype="float64")[self.order])
        running = ordered.groupby(self.codes, sort=False).cumsum().to_numpy()
        return np.concatenate([[0.0], running])

    def last_before(self, codes: np.ndarray, bound_sec: np.ndarray | int) -> np.ndarray:
        """Sorted position of each customer's last row with time < bound, or -1 when there is none."""
        first = self.start(codes)
        hi = self.position(codes, bound_sec)
        return np.where(hi > first, hi - 1, -1)


def pick(values: np.ndarray, positions: np.ndarray, *, missing: object = np.nan) -> np.ndarray:
    """`values[positions]` with `missing` where the position is -1 (no such row)."""
    values = np.asarray(values)
    out_dtype = "float64" if values.dtype.kind in "iuf" and missing is np.nan else object
    out = np.full(len(positions), missing, dtype=out_dtype)
    hit = positions >= 0
    out[hit] = values[positions[hit]]
    return out


class Probe:
    """Many (customer, snapshot) queries against one timeline, each window bound searched once.

    `days_back` bounds are `snapshot - days_back days`; `None` means the start of the history.
    """

    def __init__(self, timeline: Timeline, codes: np.ndarray, snapshot_sec: np.ndarray) -> None:
        self.timeline = timeline
        self.codes = codes
        self.snapshot_sec = snapshot_sec
        self.first = timeline.start(codes)
        self._positions: dict[int, np.ndarray] = {}

    def position(self, days_back: int | None) -> np.ndarray:
        """Sorted position just past each customer's rows before `snapshot - days_back days`."""
        if days_back is None:
            return self.first
        if days_back not in self._positions:
            bound = self.snapshot_sec - days_back * 86_400
            self._positions[days_back] = self.timeline.position(self.codes, bound)
        return self._positions[days_back]

    def count(self, days_back: int | None, until: int = 0) -> np.ndarray:
        """Rows with `snapshot - days_back days <= time < snapshot - until days` (int64)."""
        return (self.position(until) - self.position(days_back)).astype("int64")

    def total(self, running: np.ndarray, days_back: int | None, until: int = 0) -> np.ndarray:
        """Sum over the same rows as `count`, from `Timeline.running_sum` (0.0 when none)."""
        hi, lo = self.position(until), self.position(days_back)
        return np.where(hi > self.first, running[hi], 0.0) - np.where(lo > self.first, running[lo], 0.0)

    def last(self) -> np.ndarray:
        """Sorted position of each customer's last row before the snapshot, or -1."""
        hi = self.position(0)
        return np.where(hi > self.first, hi - 1, -1)

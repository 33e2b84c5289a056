"""Time inside the generator: float days since `start` (00:00 UTC), turned into epoch seconds and
rendered as ISO text in the mixed styles real exports use.

Rendering styles (one per row): `+08:00` local China time with offset, `Z` UTC, naive (no offset;
**naive text is UTC wall-clock time**), and date only (`YYYY-MM-DD`, for date fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from features.synthetic import text

DAY_SECONDS = 86_400
LOCAL_OFFSET_SECONDS = 8 * 3600  # China Standard Time, no daylight saving

# Share of activity by local hour of day (quiet nights, busy evenings).
HOUR_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 5, 5, 5.5, 5, 5, 5, 5, 5.5, 6, 7, 7.5, 7, 5, 2.5], dtype=float
)
HOUR_WEIGHTS = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()


@dataclass(frozen=True)
class Window:
    """The activity window: `start` 00:00 UTC up to the end of `end` (inclusive date)."""

    start: date
    end: date

    @property
    def start_epoch(self) -> int:
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())

    @property
    def days(self) -> int:
        """Length in days; activity times lie in [0, days)."""
        return (self.end - self.start).days + 1

    def to_epoch(self, days: np.ndarray) -> np.ndarray:
        """Float days since start -> int64 epoch seconds."""
        return self.start_epoch + np.floor(np.asarray(days) * DAY_SECONDS).astype(np.int64)

    def clamp(self, seconds: np.ndarray, *, lo_days: np.ndarray, hi_days: np.ndarray) -> np.ndarray:
        """Epoch seconds kept within [lo_days, hi_days) (days since start; inf/nan = no bound)."""
        lo_days, hi_days = np.asarray(lo_days, dtype=float), np.asarray(hi_days, dtype=float)

        def finite(days: np.ndarray) -> np.ndarray:
            return np.where(np.isfinite(days), days, 0.0)

        lo = np.where(
            np.isfinite(lo_days), self.start_epoch + np.ceil(finite(lo_days) * DAY_SECONDS), -np.inf
        )
        hi = np.where(
            np.isfinite(hi_days), self.start_epoch + np.floor(finite(hi_days) * DAY_SECONDS) - 1, np.inf
        )
        return np.clip(seconds, lo, hi).astype(np.int64)

    def at_local_hour(self, rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
        """Keep the (local) calendar day of `days` but draw a realistic local time of day -> epoch seconds."""
        day = np.floor(np.asarray(days, dtype=float)).astype(np.int64)
        hour = rng.choice(24, size=day.size, p=HOUR_WEIGHTS)
        second = hour * 3600 + rng.integers(0, 3600, size=day.size)
        return self.start_epoch + day * DAY_SECONDS + second - LOCAL_OFFSET_SECONDS


@dataclass(frozen=True)
class TsMix:
    """Probabilities of the rendering styles: +08:00, Z, naive (UTC), date only."""

    offset: float
    utc_z: float
    naive: float
    date_only: float = 0.0

    def probabilities(self) -> np.ndarray:
        p = np.array([self.offset, self.utc_z, self.naive, self.date_only], dtype=float)
        return p / p.sum()


def render(
    rng: np.random.Generator, seconds: np.ndarray, *, mix: TsMix, valid: np.ndarray | None = None
) -> pa.Array:
    """Epoch seconds -> ISO strings in mixed styles (`2024-03-05T18:20:30+08:00`, `...Z`,
    `2024-03-05 10:20:30`, `2024-03-05`). Rows where `valid` is False become null."""
    seconds = np.asarray(seconds, dtype=np.int64)
    n = seconds.size
    style = rng.choice(4, size=n, p=mix.probabilities())
    shifted = seconds + np.where((style == 0) | (style == 3), LOCAL_OFFSET_SECONDS, 0)
    day = shifted // DAY_SECONDS
    second_of_day = shifted - day * DAY_SECONDS
    as_date = day.astype("datetime64[D]")
    year = as_date.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = as_date.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    dom = (as_date - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    has_time = (style != 3).astype(np.int64)

    def timed(piece: text.Piece) -> text.Piece:
        return text.Piece(piece.matrix, piece.lengths * has_time)

    pieces = [
        text.digits(year, 4),
        text.constant("-", n),
        text.digits(month, 2),
        text.constant("-", n),
        text.digits(dom, 2),
        timed(text.choice(["T", "T", " ", ""], style)),
        timed(text.digits(second_of_day // 3600, 2)),
        timed(text.constant(":", n)),
        timed(text.digits(second_of_day // 60 % 60, 2)),
        timed(text.constant(":", n)),
        timed(text.digits(second_of_day % 60, 2)),
        text.choice(["+08:00", "Z", "", ""], style),
    ]
    return text.join(pieces, valid=valid)


def poisson_times(
    rng: np.random.Generator, *, rate: np.ndarray, begin: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A homogeneous Poisson process per owner: `rate` events/day over [begin, end).

    Returns (owner index, time in days) for every event. Non-finite or empty windows yield nothing.
    Time-varying intensity is obtained by thinning the result (`keep = rng.random(n) < m(t) / m_max`).
    """
    begin = np.asarray(begin, dtype=float)
    span = np.asarray(end, dtype=float) - begin
    span = np.where(np.isfinite(span) & (span > 0), span, 0.0)
    counts = rng.poisson(np.asarray(rate, dtype=float) * span)
    owner = np.repeat(np.arange(span.size), counts)
    times = begin[owner] + rng.random(owner.size) * span[owner]
    return owner, times


def ramp(times: np.ndarray, churn: np.ndarray, *, width: float) -> np.ndarray:
    """0 until `width` days before churn, rising linearly to 1 at churn (0 everywhere if churn is inf)."""
    with np.errstate(invalid="ignore"):
        r = (np.asarray(times) - (np.asarray(churn) - width)) / width
    return np.clip(np.nan_to_num(r, nan=0.0, neginf=0.0), 0.0, 1.0)

"""How real sources get messy, as a few vectorised transformations with explicit rates.

Two kinds of variety:
- *format variety* that is not an error (phone formats, time-zone styles): always present;
- *errors* (missing values, exact re-sent rows, negative amounts, future dates, case/space noise in
  emails, out-of-range scores): a few percent, scaled by `generator.mess_scale` (0 = clean data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic import text

# Phone styles: 13800138000 | +86 138-0013-8000 | 0086 13800138000 | +8613800138000 | 138 0013 8000
PHONE_STYLES = 5
_PHONE_PREFIX = ["", "+86 ", "0086 ", "+86", ""]
_PHONE_SEP = ["", "-", "", "", " "]


@dataclass(frozen=True)
class MessRates:
    """Error rates per row (before `scaled`). Defaults are a realistic few percent."""

    duplicate_orders: float = 0.010
    duplicate_events: float = 0.008
    duplicate_leads: float = 0.005
    negative_amount: float = 0.003
    future_order: float = 0.002
    future_event: float = 0.001
    missing_order_ref: float = 0.003
    missing_event_ref: float = 0.002
    missing_category: float = 0.010
    missing_discount: float = 0.015
    missing_channel: float = 0.010
    missing_contact_email: float = 0.030
    missing_contact_phone: float = 0.040
    missing_city: float = 0.020
    missing_acquisition: float = 0.020
    missing_lead_email: float = 0.030
    missing_lead_phone: float = 0.150
    missing_campaign: float = 0.050
    email_case: float = 0.040
    email_space: float = 0.020
    bad_engagement: float = 0.003

    def scaled(self, factor: float) -> MessRates:
        """All rates times `factor` (capped at 0.5 so a row is still more often clean than not)."""
        return replace(self, **{f.name: min(getattr(self, f.name) * factor, 0.5) for f in fields(self)})


def phones(
    rng: np.random.Generator,
    numbers: np.ndarray,
    *,
    style_p: tuple[float, ...],
    valid: np.ndarray | None = None,
) -> pa.Array:
    """Render 11-digit CN mobile numbers in mixed styles (`style_p`: probability of each of the 5)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    p = np.asarray(style_p, dtype=float)
    style = rng.choice(PHONE_STYLES, size=numbers.size, p=p / p.sum())
    d = text.digits(numbers, 11)

    def part(lo: int, hi: int) -> text.Piece:
        return text.Piece(d.matrix[:, lo:hi], np.full(numbers.size, hi - lo, dtype=np.int64))

    return text.join(
        [
            text.choice(_PHONE_PREFIX, style),
            part(0, 3),
            text.choice(_PHONE_SEP, style),
            part(3, 7),
            text.choice(_PHONE_SEP, style),
            part(7, 11),
        ],
        valid=valid,
    )


def emails(
    rng: np.random.Generator, addresses: pa.Array, *, rates: MessRates, valid: np.ndarray | None = None
) -> pa.Array:
    """Emails with a few upper-cased / title-cased and a few with stray leading or trailing spaces."""
    if isinstance(addresses, pa.ChunkedArray):
        addresses = addresses.combine_chunks()
    n = len(addresses)
    case, space = rng.random(n), rng.random(n)
    upper = case < rates.email_case / 3
    title = (case >= rates.email_case / 3) & (case < rates.email_case)
    lead = space < rates.email_space / 2
    trail = (space >= rates.email_space / 2) & (space < rates.email_space)
    change = upper | title | lead | trail
    # Only the few changed rows are transformed, then put back in place.
    rows = np.flatnonzero(change)
    changed = addresses.take(pa.array(rows))
    changed = pc.if_else(pa.array(upper[rows]), pc.utf8_upper(changed), changed)
    changed = pc.if_else(pa.array(title[rows]), pc.utf8_title(changed), changed)
    changed = pc.binary_join_element_wise(
        text.labels(["", " "], lead[rows].astype(np.int64)),
        changed,
        text.labels(["", " "], trail[rows].astype(np.int64)),
        "",
    )
    result = pc.replace_with_mask(addresses, pa.array(change), changed.cast(addresses.type))
    if valid is not None and not np.all(valid):
        result = pc.if_else(pa.array(np.asarray(valid, dtype=bool)), result, pa.scalar(None, result.type))
    return result


def resend_duplicates(
    rng: np.random.Generator, n: int, *, rate: float, max_delay_rows: int = 5000
) -> np.ndarray:
    """Row order of a table whose rows were partly sent twice: every row once, and ~`rate` of them again
    somewhat later in the file (an exact re-sent row). Returns indices into the original rows."""
    again = np.flatnonzero(rng.random(n) < rate)
    insert_at = np.minimum(again + 1 + rng.integers(0, max_delay_rows, again.size), n)
    order = np.argsort(insert_at, kind="stable")
    return np.insert(np.arange(n), insert_at[order], again[order])


def by_kind(kind: np.ndarray, render: dict[int, Callable[[np.ndarray], pa.Array]]) -> pa.Array:
    """Assemble one string column whose rows come from different renderings: `render[k](rows)` renders
    the rows (indices) of kind k only, so each row is formatted once, by the renderer it needs."""
    kind = np.asarray(kind)
    parts, positions = [], []
    for k, fn in render.items():
        rows = np.flatnonzero(kind == k)
        parts.append(fn(rows))
        positions.append(rows)
    position = np.concatenate(positions)
    inverse = np.empty_like(position)
    inverse[position] = np.arange(position.size)
    combined = pa.concat_arrays(
        [(p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p).cast(pa.string()) for p in parts]
    )
    return combined.take(pa.array(inverse))


def flags(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """A boolean mask with each row True with probability `rate`."""
    return rng.random(n) < rate

"""Point-in-time building blocks in Ibis, shared by the feature tables (one definition, any engine).

Times are epoch microseconds (int64) computed in the engine, so a window bound is an integer compare
with the same result on DuckDB and Spark. A row counts at snapshot `s` only when its time is `< s`;
a window of `W` days holds `s - W days <= time < s`. Money is summed as integer micro-units (amounts
rounded to 6 decimals first): integer sums are exact in any order, so engines that add in different
orders (threads, partitions) still give the same value to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

US_PER_DAY = 86_400 * 1_000_000
MICRO = 1_000_000
_EPOCH = ibis.timestamp("1970-01-01 00:00:00", timezone="UTC")


def epoch_us(column: ir.TimestampValue) -> ir.IntegerValue:
    """A timestamp column as epoch microseconds (int64); null stays null."""
    if not column.type().is_timestamp():  # an empty or all-null source column has no type of its own
        column = column.cast(ibis.dtype("timestamp('UTC')"))
    return column.delta(_EPOCH, unit="microsecond").cast("int64")


def micro_units(column: ir.NumericValue) -> ir.IntegerValue:
    """An amount as integer micro-units (missing = 0), for exact sums."""
    return (column.cast("float64").fill_null(0.0) * MICRO).round().cast("int64")


def money(micro_sum: ir.IntegerValue) -> ir.FloatingValue:
    """A micro-unit sum back to money (0.0 when there were no rows)."""
    return micro_sum.fill_null(0).cast("float64") / MICRO


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """numerator / denominator as float64; null (NaN) when the denominator is 0 (or null)."""
    den = denominator.cast("float64")
    return ibis.ifelse(den != 0, numerator.cast("float64") / den, ibis.null("float64"))


def days_between(later_us: ir.IntegerValue, earlier_us: ir.IntegerValue) -> ir.FloatingValue:
    """Fractional days from `earlier_us` to `later_us` (null when either is null)."""
    return (later_us - earlier_us).cast("float64") / US_PER_DAY


def snapshot_table(snapshots: Iterable[pd.Timestamp]) -> ir.Table:
    """The snapshots as a one-column table of epoch microseconds (midnights UTC)."""
    values = [int(pd.Timestamp(s).as_unit("us").value // 1_000) for s in snapshots]
    return ibis.memtable(pd.DataFrame({"snapshot_us": pd.Series(values, dtype="int64")}))


@dataclass(frozen=True)
class TimeGrid:
    """Cells of time on which every window bound of a set of snapshots falls: points `phase + k *
    width_us` (k any integer). Two times in one cell are on the same side of every bound `s - W days`,
    so rows may be summed per cell before the snapshots' join without changing a feature."""

    width_us: int
    phase_us: int

    def cell(self, ts_us: ir.IntegerValue) -> ir.IntegerValue:
        """The start of `ts_us`'s cell, shifted by a constant: a key equal for the times of one cell.

        Integer `%` only (exact on every engine; Ibis compiles `//` through a float division), on
        times moved above zero so no engine's sign rule for `%` matters (year 1 is -6.2e16 us)."""
        shifted = ts_us - self.phase_us + self.width_us * (10**17 // self.width_us + 1)
        return shifted - shifted % self.width_us


def time_grid(snapshots: Iterable[pd.Timestamp]) -> TimeGrid:
    """The widest `TimeGrid` holding every bound `s - W days` of `snapshots` (W whole days): a day
    when the snapshots are midnights, as `features.snapshots` makes them."""
    points = [int(pd.Timestamp(s).as_unit("us").value // 1_000) for s in snapshots]
    if not points:
        return TimeGrid(width_us=US_PER_DAY, phase_us=0)
    width = math.gcd(US_PER_DAY, *(p - points[0] for p in points))
    return TimeGrid(width_us=width, phase_us=points[0] % width)


def first_seen_from(customers: ir.Table, stamped: Iterable[tuple[ir.Table, str]]) -> ir.Table:
    """`customers` with `first_seen_ts` derived as the earliest of signup and each (table, column) time.

    Only a minimum over all time, so rows after a snapshot never make a customer "known" before it.
    """
    # one timestamp type for the union: parquet files written elsewhere carry ns or ms, ours us
    ts_type = ibis.dtype("timestamp('UTC', 6)")
    parts = [
        t.select(customer_id=t.customer_id.cast("string"), ts=t[col].cast(ts_type)) for t, col in stamped
    ]
    if "signup_ts" in customers.columns:
        parts.append(
            customers.select(
                customer_id=customers.customer_id.cast("string"), ts=customers.signup_ts.cast(ts_type)
            )
        )
    stacked = ibis.union(*parts) if len(parts) > 1 else parts[0]
    earliest = (
        stacked.filter(stacked.ts.notnull()).group_by("customer_id").agg(first_seen_ts=stacked.ts.min())
    )
    keyed = customers.mutate(_cid=customers.customer_id.cast("string"))
    joined = keyed.left_join(earliest, keyed._cid == earliest.customer_id)
    return joined.select(*[keyed[c] for c in customers.columns], first_seen_ts=earliest.first_seen_ts)


def spine_customers(customers: ir.Table) -> ir.Table:
    """The customers a spine is made of: those whose consent to profiling is not withdrawn (null =
    never asked = allowed), with `customer_id` (string), `first_seen_us` and `signup_us` (null when
    unknown). Separate from `spine` so the times are computed once for many snapshots."""
    consent = customers.consent_profiling.cast("boolean").fill_null(True)
    signup = epoch_us(customers.signup_ts) if "signup_ts" in customers.columns else ibis.null("int64")
    return customers.filter(consent).select(
        customer_id=customers.customer_id.cast("string"),
        first_seen_us=epoch_us(customers.first_seen_ts),
        signup_us=signup,
    )


def spine(allowed: ir.Table, snapshots: Iterable[pd.Timestamp]) -> ir.Table:
    """One row per (customer, snapshot) for the `spine_customers` known before it
    (`first_seen_ts < snapshot`). Columns: `customer_id` (string), `snapshot_us`, `signup_us`."""
    snaps = snapshot_table(snapshots)
    rows = allowed.cross_join(snaps)
    rows = rows.filter(rows.first_seen_us < rows.snapshot_us)  # never seen (null) is never known
    return rows.select("customer_id", "snapshot_us", "signup_us")


def before_snapshot(rows: ir.Table, spine_rows: ir.Table) -> ir.Table:
    """Each spine row joined to its customer's `rows` with `ts_us < snapshot` (left join: a spine row
    without any keeps one row with null `ts_us`). `rows` has `rid` (customer id) and `ts_us`."""
    return spine_rows.left_join(
        rows, [spine_rows.customer_id == rows.rid, rows.ts_us < spine_rows.snapshot_us]
    )


def within(joined: ir.Table, days_back: int, until: int = 0) -> ir.BooleanValue:
    """Rows with `snapshot - days_back days <= ts < snapshot - until days`."""
    s, ts = joined.snapshot_us, joined.ts_us
    return (ts >= s - days_back * US_PER_DAY) & (ts < s - until * US_PER_DAY)


def in_spine_order(table: ir.Table) -> ir.Table:
    """Rows in (snapshot, customer_id) order: every feature table shares one deterministic row order."""
    return table.order_by(["snapshot_us", "customer_id"])

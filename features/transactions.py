"""`customer_transactions`: order features at each snapshot, from orders strictly before it.

Definitions (snapshot `s`; a window of `W` days holds orders with `s - W days <= order_ts < s`; a
*purchase* is an order that is not cancelled; a *kept* order is neither cancelled nor returned):

- `recency_days`: days (fractional) from the last purchase to `s`; NaN without any purchase before `s`.
- `frequency_<W>d`: number of purchases in the window (returned orders count: the purchase happened).
- `monetary_<W>d`: sum of `amount` (net of discount) of kept orders in the window; 0 without any.
- `avg_order_value_365d`: `monetary_365d` / number of kept orders in 365 days; NaN without kept orders.
- `frequency_trend_90d`: purchases in the last 90 days / purchases in the 90 days before those
  (`s - 180d <= ts < s - 90d`). NaN when the earlier period has none (a ratio to zero is undefined;
  `frequency_90d` and `tenure_days` still tell the model about newcomers).
- `monetary_trend_90d`: the same ratio on kept-order `amount`; NaN when the earlier sum is 0.
- `return_rate_365d`: returned purchases / purchases in 365 days; NaN without purchases.
- `discount_rate_365d`: sum of `discount` / sum of gross value (`amount + discount`) over purchases in
  365 days; NaN when the gross value is 0 (no purchases).
- `category_breadth_365d`: distinct non-null categories among purchases in 365 days.
- `orders_lifetime`: purchases before `s`; `monetary_lifetime`: kept-order `amount` before `s`.
- `tenure_days`: days from the earlier of the signup (`customers.signup_ts`, if before `s`) and the
  first purchase to `s`; NaN when neither is before `s`.

`frequency_*`/`monetary_*` exist for every window in `windows_days` (the contract's are 30, 90, 365);
the 90- and 365-day features above are fixed by the contract.

One Ibis expression (features/pit.py): it runs on DuckDB or Spark (features/engine.py); money is
summed in exact integer micro-units, so both engines give the same bits.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.pit import before_snapshot, days_between, epoch_us, micro_units, money, ratio, within

REQUIRED_ORDER_COLUMNS = (
    "customer_id",
    "order_ts",
    "amount",
    "discount",
    "category",
    "is_returned",
    "is_cancelled",
)


def transaction_columns(windows_days: list[int]) -> list[str]:
    """Feature columns of `customer_transactions`, in order, for the given windows."""
    windows = sorted(set(windows_days))
    return [
        "recency_days",
        *(f"frequency_{w}d" for w in windows),
        *(f"monetary_{w}d" for w in windows),
        "avg_order_value_365d",
        "frequency_trend_90d",
        "monetary_trend_90d",
        "return_rate_365d",
        "discount_rate_365d",
        "category_breadth_365d",
        "orders_lifetime",
        "monetary_lifetime",
        "tenure_days",
    ]


def purchase_rows(orders: ir.Table) -> ir.Table:
    """The purchases (orders with a time, not cancelled) as `transaction_features` reads them: customer
    (`rid`), time in epoch microseconds, kept and returned flags, money in integer micro-units."""
    cancelled = orders.is_cancelled.cast("boolean").fill_null(False)
    returned = orders.is_returned.cast("boolean").fill_null(False)
    amount, discount = micro_units(orders.amount), micro_units(orders.discount)
    return orders.filter(~cancelled & orders.order_ts.notnull()).select(
        rid=orders.customer_id.cast("string"),
        ts_us=epoch_us(orders.order_ts),
        kept=ibis.ifelse(returned, 0, amount),
        is_kept=ibis.ifelse(returned, 0, 1),
        is_returned=ibis.ifelse(returned, 1, 0),
        discount=discount,
        gross=amount + discount,
        category=orders.category.cast("string"),
    )


def transaction_features(purchases: ir.Table, *, spine: ir.Table, windows_days: list[int]) -> ir.Table:
    """Order features for every spine row (`features.pit.spine`: customer_id, snapshot_us, signup_us)
    from `purchase_rows`: `customer_id`, `snapshot_us`, then `transaction_columns(windows_days)`. An
    expression: no I/O."""
    windows = sorted(set(windows_days))
    j = before_snapshot(purchases, spine)
    has = j.ts_us.notnull()
    y = within(j, 365)
    aggs = {
        "last_us": j.ts_us.max(),
        "first_us": j.ts_us.min(),
        **{f"frequency_{w}d": j.ts_us.count(where=within(j, w)) for w in windows},
        **{f"_kept_{w}": j.kept.sum(where=within(j, w)) for w in windows},
        "_kept_count_365": j.is_kept.sum(where=y),
        "_freq_prev_90": j.ts_us.count(where=within(j, 180, 90)),
        "_kept_prev_90": j.kept.sum(where=within(j, 180, 90)),
        "_returned_365": j.is_returned.sum(where=y),
        "_discount_365": j.discount.sum(where=y),
        "_gross_365": j.gross.sum(where=y),
        "category_breadth_365d": j.category.nunique(where=y),
        "orders_lifetime": j.ts_us.count(where=has),
        "_kept_lifetime": j.kept.sum(where=has),
    }
    g = j.group_by(["customer_id", "snapshot_us", "signup_us"]).aggregate(**aggs)
    s = g.snapshot_us
    # tenure: from the older of the signup (if before s) and the first purchase; null when neither
    signup = ibis.ifelse(g.signup_us < s, g.signup_us, ibis.null("int64"))
    since = ibis.cases(
        (g.first_us.isnull(), signup),
        (signup.isnull(), g.first_us),
        else_=ibis.least(g.first_us, signup),
    )
    columns = {
        "recency_days": days_between(s, g.last_us),
        **{f"frequency_{w}d": g[f"frequency_{w}d"].cast("int64") for w in windows},
        **{f"monetary_{w}d": money(g[f"_kept_{w}"]) for w in windows},
        "avg_order_value_365d": ratio(money(g._kept_365), g._kept_count_365.fill_null(0)),
        "frequency_trend_90d": ratio(g.frequency_90d, g._freq_prev_90),
        "monetary_trend_90d": ratio(g._kept_90.fill_null(0), g._kept_prev_90.fill_null(0)),
        "return_rate_365d": ratio(g._returned_365.fill_null(0), g.frequency_365d),
        "discount_rate_365d": ratio(g._discount_365.fill_null(0), g._gross_365.fill_null(0)),
        "category_breadth_365d": g.category_breadth_365d.cast("int64"),
        "orders_lifetime": g.orders_lifetime.cast("int64"),
        "monetary_lifetime": money(g._kept_lifetime),
        "tenure_days": days_between(s, since),
    }
    return g.select("customer_id", "snapshot_us", **{c: columns[c] for c in transaction_columns(windows)})

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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.snapshots import US_PER_DAY, Spine, to_epoch_us
from features.timeline import Probe, Timeline, pick

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


def transaction_features(
    orders: pd.DataFrame, *, spine: Spine, customers: pd.DataFrame, windows_days: list[int]
) -> pd.DataFrame:
    """Order features for every spine row, in spine order: `customer_id`, `snapshot_us`, then
    `transaction_columns(windows_days)`. `customers` supplies `signup_ts` for tenure. Pure: no I/O."""
    windows = sorted(set(windows_days))
    code = spine.encode(orders["customer_id"])
    ts_us = to_epoch_us(orders["order_ts"])
    cancelled = orders["is_cancelled"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    # purchases: orders of profiled customers, with a time, not cancelled
    keep = (code >= 0) & ts_us.notna().to_numpy() & ~cancelled
    returned = orders["is_returned"].astype("boolean").fillna(False).to_numpy(dtype=bool)[keep]
    amount = pd.to_numeric(orders["amount"]).astype("float64").fillna(0.0).to_numpy()[keep]
    discount = pd.to_numeric(orders["discount"]).astype("float64").fillna(0.0).to_numpy()[keep]
    category = orders["category"].to_numpy(dtype=object)[keep]
    p_code, p_ts = code[keep], ts_us.to_numpy(dtype="int64", na_value=0)[keep]
    purchases = Timeline(p_code, p_ts, n_codes=len(spine.ids), what="orders")

    q, s_sec, s_us = spine.code, spine.snapshot_sec, spine.snapshot_us
    at = Probe(purchases, q, s_sec)
    kept_amount = purchases.running_sum(np.where(returned, 0.0, amount))
    kept_count = purchases.running_sum((~returned).astype("float64"))
    returned_count = purchases.running_sum(returned.astype("float64"))
    discounts = purchases.running_sum(discount)
    gross = purchases.running_sum(amount + discount)

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        out = np.full(len(numerator), np.nan)
        np.divide(numerator, denominator, out=out, where=denominator != 0)
        return out

    out = spine.frame()
    out["recency_days"] = (s_us - pick(purchases.ts_us, at.last())) / US_PER_DAY
    for w in windows:
        out[f"frequency_{w}d"] = at.count(w)
    for w in windows:
        out[f"monetary_{w}d"] = at.total(kept_amount, w)
    out["avg_order_value_365d"] = ratio(at.total(kept_amount, 365), at.total(kept_count, 365))
    out["frequency_trend_90d"] = ratio(at.count(90).astype("float64"), at.count(180, 90).astype("float64"))
    out["monetary_trend_90d"] = ratio(at.total(kept_amount, 90), at.total(kept_amount, 180, 90))
    out["return_rate_365d"] = ratio(at.total(returned_count, 365), at.count(365).astype("float64"))
    out["discount_rate_365d"] = ratio(at.total(discounts, 365), at.total(gross, 365))
    breadth = np.zeros(len(q), dtype="int64")
    present = pd.notna(category)
    for value in pd.unique(category[present]):  # one pass per category (a short list), not per customer
        mask = category == value
        of_category = Timeline(p_code[mask], p_ts[mask], n_codes=len(spine.ids), what="orders")
        breadth += Probe(of_category, q, s_sec).count(365) > 0
    out["category_breadth_365d"] = breadth
    out["orders_lifetime"] = at.count(None)
    out["monetary_lifetime"] = at.total(kept_amount, None)
    first_purchase = pick(purchases.ts_us, np.where(at.position(0) > at.first, at.first, -1))
    signup = _signup_us(customers, spine)
    # the older of the signup (if before s) and the first purchase (if before s); NaN when neither
    since = np.fmin(first_purchase, np.where(signup < s_us, signup, np.nan))
    out["tenure_days"] = (s_us - since) / US_PER_DAY
    return out


def _signup_us(customers: pd.DataFrame, spine: Spine) -> np.ndarray:
    """Each spine row's signup time (epoch microseconds as float64, NaN when unknown)."""
    if "signup_ts" not in customers:
        return np.full(len(spine), np.nan)
    by_code = np.full(len(spine.ids), np.nan)
    code = spine.encode(customers["customer_id"])
    signup = to_epoch_us(customers["signup_ts"]).to_numpy(dtype="float64", na_value=np.nan)
    by_code[code[code >= 0]] = signup[code >= 0]
    return by_code[spine.code]

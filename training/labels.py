"""Labels as Feast entity frames (`customer_id, event_timestamp, label`): pure functions of clean tables.

A label at snapshot t looks only at [t, t + horizon); features (built by `features`) look strictly before t.
Only snapshots whose horizon ends on or before the end of the data are labelled, so no label is guessed
from data that was never observed. Customers who withdrew consent are never labelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from core.errors import ValidationFailed

ENTITY_COLUMNS = ["customer_id", "event_timestamp", "label"]


def _require(table: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValidationFailed(f"clean table '{name}' lacks column(s) {missing} needed for labels")


def _withdrawn(customers: pd.DataFrame | None) -> set[str]:
    if customers is None:
        return set()
    _require(customers, ["customer_id", "consent_profiling"], "customers")
    withdrawn = customers["consent_profiling"].astype("boolean").eq(False).fillna(False).astype(bool)
    return set(customers.loc[withdrawn, "customer_id"].astype(str))


def _labelled_snapshots(
    snapshots: Sequence[pd.Timestamp], *, horizon: pd.Timedelta, data_end: pd.Timestamp
) -> list[pd.Timestamp]:
    return [t for t in sorted(snapshots) if t + horizon <= data_end]


def _frame(rows: list[pd.DataFrame], *, label_dtype: str = "int64") -> pd.DataFrame:
    if not rows:
        out = pd.DataFrame({"customer_id": pd.Series(dtype="string"), "label": pd.Series(dtype=label_dtype)})
        out["event_timestamp"] = pd.Series(dtype="datetime64[us, UTC]")
        return out[ENTITY_COLUMNS]
    out = pd.concat(rows, ignore_index=True)
    out["customer_id"] = out["customer_id"].astype("string")
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[us, UTC]")
    out["label"] = out["label"].astype(label_dtype)
    return out[ENTITY_COLUMNS].sort_values(["event_timestamp", "customer_id"], ignore_index=True)


def completed_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders that count as a purchase: neither cancelled nor returned."""
    _require(orders, ["customer_id", "order_ts", "is_returned", "is_cancelled"], "orders")
    keep = ~(
        orders["is_returned"].fillna(False).astype(bool) | orders["is_cancelled"].fillna(False).astype(bool)
    )
    return orders.loc[keep, ["customer_id", "order_ts"]]


def churn_labels(
    *,
    orders: pd.DataFrame,
    customers: pd.DataFrame | None,
    snapshots: Sequence[pd.Timestamp],
    horizon_days: int,
    activity_days: int = 365,
    data_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Churn: customers active before t (a completed order in [t - activity_days, t)) and label 1 when
    they make no completed purchase in [t, t + horizon_days). `data_end` defaults to the last order."""
    done = completed_orders(orders)
    end = data_end if data_end is not None else orders["order_ts"].max()
    if pd.isna(end):
        return _frame([])
    horizon = pd.Timedelta(days=horizon_days)
    withdrawn = _withdrawn(customers)
    done = done[~done["customer_id"].astype(str).isin(withdrawn)]
    rows = []
    for t in _labelled_snapshots(snapshots, horizon=horizon, data_end=end):
        before = done[(done["order_ts"] >= t - pd.Timedelta(days=activity_days)) & (done["order_ts"] < t)]
        active = pd.Index(before["customer_id"].unique())
        if active.empty:
            continue
        after = done[(done["order_ts"] >= t) & (done["order_ts"] < t + horizon)]
        bought = active.isin(after["customer_id"].unique())  # one hash join, not a lookup per customer
        rows.append(
            pd.DataFrame({"customer_id": active, "event_timestamp": t, "label": (~bought).astype("int64")})
        )
    return _frame(rows)


def value_labels(
    *,
    orders: pd.DataFrame,
    customers: pd.DataFrame | None,
    snapshots: Sequence[pd.Timestamp],
    horizon_days: int,
    data_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Customer value: customers with a completed order before t, labelled with the `amount` of their
    completed (kept) orders in [t, t + horizon_days) (0 when they buy nothing). Only snapshots whose
    whole horizon lies within the data (`data_end`, default the last order) are labelled. The label is
    a float spend, not 0/1."""
    _require(orders, ["amount"], "orders")
    keep = ~(
        orders["is_returned"].fillna(False).astype(bool) | orders["is_cancelled"].fillna(False).astype(bool)
    )
    done = orders.loc[keep, ["customer_id", "order_ts", "amount"]]
    end = data_end if data_end is not None else orders["order_ts"].max()
    if pd.isna(end):
        return _frame([], label_dtype="float64")
    horizon = pd.Timedelta(days=horizon_days)
    done = done[~done["customer_id"].astype(str).isin(_withdrawn(customers))]
    rows = []
    for t in _labelled_snapshots(snapshots, horizon=horizon, data_end=end):
        buyers = pd.Index(done.loc[done["order_ts"] < t, "customer_id"].unique())
        if buyers.empty:
            continue
        window = done[(done["order_ts"] >= t) & (done["order_ts"] < t + horizon)]
        spend = window.groupby("customer_id")["amount"].sum()
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": buyers,
                    "event_timestamp": t,
                    "label": spend.reindex(buyers).fillna(0.0).to_numpy(dtype="float64"),
                }
            )
        )
    return _frame(rows, label_dtype="float64")


def conversion_labels(
    *,
    leads: pd.DataFrame,
    customers: pd.DataFrame | None,
    snapshots: Sequence[pd.Timestamp],
    horizon_days: int,
    data_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Conversion: customers with an open lead at t (created before t, not converted before t) and label 1
    when one of their open leads converts in [t, t + horizon_days). `data_end` defaults to the last lead
    creation or conversion seen."""
    _require(leads, ["customer_id", "created_ts", "converted_ts"], "leads")
    end = data_end
    if end is None:
        end = pd.concat([leads["created_ts"], leads["converted_ts"]]).max()
    if pd.isna(end):
        return _frame([])
    horizon = pd.Timedelta(days=horizon_days)
    withdrawn = _withdrawn(customers)
    usable = leads[~leads["customer_id"].astype(str).isin(withdrawn)]
    rows = []
    for t in _labelled_snapshots(snapshots, horizon=horizon, data_end=end):
        converted = usable["converted_ts"]
        open_at_t = usable[(usable["created_ts"] < t) & (converted.isna() | (converted >= t))]
        if open_at_t.empty:
            continue
        converts = open_at_t["converted_ts"].notna() & (open_at_t["converted_ts"] < t + horizon)
        per_customer = converts.groupby(open_at_t["customer_id"]).any()
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": per_customer.index,
                    "event_timestamp": t,
                    "label": per_customer.to_numpy().astype("int64"),
                }
            )
        )
    return _frame(rows)


def segmentation_entities(
    *,
    orders: pd.DataFrame,
    customers: pd.DataFrame | None,
    snapshots: Sequence[pd.Timestamp],
    data_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Customers to segment: those with a completed order before the latest snapshot that the data
    reaches (t <= data_end), at that snapshot. Columns `customer_id, event_timestamp` (no label)."""
    done = completed_orders(orders)
    end = data_end if data_end is not None else orders["order_ts"].max()
    eligible = [t for t in sorted(snapshots) if not pd.isna(end) and t <= end]
    if not eligible:
        raise ValidationFailed(
            f"no snapshot on or before the end of the orders data ({end}); check features.first_snapshot"
        )
    t = eligible[-1]
    ids = pd.Index(done.loc[done["order_ts"] < t, "customer_id"].unique())
    ids = ids[~ids.astype(str).isin(_withdrawn(customers))]
    out = pd.DataFrame({"customer_id": ids.astype("string"), "event_timestamp": t})
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[us, UTC]")
    return out.sort_values("customer_id", ignore_index=True)

"""`persona data generate --continue --days N`: the next days of a synthetic shop, appended to its raw
orders, so `persona refresh` has new data to take in (the demo's second day).

Each customer reference orders on a new day with its own recent rate (orders in the last 365 days of
the file / 365); an order's amount, discount, quantity, category and status are drawn from that
customer's own past orders. New order ids continue after the file's; timestamps are ISO 8601 UTC.
The last day of the file is its latest day with a normal volume of orders, so a few stray
future-dated rows (the generator's mess) do not move it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import SourceError

ORDERS_FILE = "orders.csv.gz"


@dataclass
class Continuation:
    first_day: str
    last_day: str
    orders: int
    customers: int


def last_full_day(stamps: pd.Series) -> pd.Timestamp:
    """The latest day with at least a quarter of the median daily order count."""
    days = stamps.dropna().dt.floor("D").value_counts().sort_index()
    if days.empty:
        raise SourceError("orders: no readable order_ts to continue from")
    normal = days[days >= max(1.0, days.median() / 4)]
    return normal.index.max()


def continue_orders(raw_dir: Path, *, days: int, seed: int) -> Continuation:
    """Append `days` days of orders to `raw_dir/orders.csv.gz` (see module doc); atomic."""
    if days < 1:
        raise SourceError(f"--days must be at least 1, got {days}")
    path = Path(raw_dir) / ORDERS_FILE
    if not path.is_file():
        raise SourceError(f"no orders to continue at {path}", hint="run `persona data generate` first")
    orders = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    stamps = pd.to_datetime(orders["order_ts"], utc=True, errors="coerce", format="mixed")
    end = last_full_day(stamps)
    recent = orders[(stamps > end - pd.Timedelta(days=365)) & (stamps <= end + pd.Timedelta(days=1))]
    recent = recent.dropna(subset=["customer_ref"])
    rate = recent.groupby("customer_ref").size() / 365.0
    rng = np.random.default_rng([seed, int(end.timestamp())])  # a different draw for each new day
    pools = {ref: frame.reset_index(drop=True) for ref, frame in recent.groupby("customer_ref")}
    numbers = pd.to_numeric(orders["order_id"].str.extract(r"(\d+)$")[0], errors="coerce")
    next_id = int(numbers.max()) + 1 if numbers.notna().any() else 1
    width = max(8, len(str(next_id)))
    rows = []
    for day in range(1, days + 1):
        when = end + pd.Timedelta(days=day)
        buyers = rate.index[rng.random(len(rate)) < rate.to_numpy()]
        for ref in buyers:
            past = pools[ref].iloc[int(rng.integers(len(pools[ref])))]
            second = int(rng.integers(8 * 3600, 22 * 3600))
            rows.append(
                {
                    **past.to_dict(),
                    "order_id": f"O{next_id:0{width}d}",
                    "order_ts": (when + pd.Timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
            next_id += 1
    new = pd.DataFrame(rows, columns=orders.columns)
    tmp = path.with_name(f".{path.name}.tmp")
    pd.concat([orders, new], ignore_index=True).to_csv(
        tmp, index=False, compression={"method": "gzip", "compresslevel": 1}
    )
    os.replace(tmp, path)
    return Continuation(
        first_day=(end + pd.Timedelta(days=1)).date().isoformat(),
        last_day=(end + pd.Timedelta(days=days)).date().isoformat(),
        orders=len(new),
        customers=new["customer_ref"].nunique() if len(new) else 0,
    )

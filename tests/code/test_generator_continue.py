"""`persona data generate --continue --days N`: the next days of orders, after the file's last full day."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.synthetic.continuation import continue_orders


def _orders(path: Path) -> pd.DataFrame:
    days = pd.date_range("2025-01-01", "2025-12-31", freq="D", tz="UTC")
    rows = [
        {
            "order_id": f"O{n:08d}",
            "customer_ref": f"c{n % 40}@example.com",
            "order_ts": (day + pd.Timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": str(10 + n % 7),
            "status": "completed",
        }
        for n, day in enumerate(day for day in days for _ in range(8))
    ]
    # one stray future-dated row (a typo'd year) must not move the end
    rows.append({**rows[-1], "order_id": "O99999999", "order_ts": "2027-03-01T10:00:00Z"})
    frame = pd.DataFrame(rows)
    frame.to_csv(path / "orders.csv.gz", index=False)
    return frame


def test_continue_appends_the_next_days(tmp_path: Path) -> None:
    before = _orders(tmp_path)
    added = continue_orders(tmp_path, days=2, seed=3)
    after = pd.read_csv(tmp_path / "orders.csv.gz", dtype=str)
    new = after.iloc[len(before) :]
    assert (added.first_day, added.last_day) == ("2026-01-01", "2026-01-02")
    assert added.orders == len(new) > 0 and added.customers == new["customer_ref"].nunique()
    days = pd.to_datetime(new["order_ts"], utc=True).dt.strftime("%Y-%m-%d")
    assert set(days) <= {"2026-01-01", "2026-01-02"}
    # 8 orders a day over 40 customers: about 8 a day expected; ids unique and new
    assert 4 <= len(new) <= 40 and after["order_id"].is_unique
    # every new order belongs to a known customer and repeats one of its own amounts
    for ref, amount in zip(new["customer_ref"], new["amount"], strict=True):
        assert amount in set(before.loc[before["customer_ref"] == ref, "amount"])
    assert after.iloc[: len(before)].equals(before.astype(str))  # history untouched


def test_continue_is_seeded_and_moves_on(tmp_path: Path) -> None:
    one, two = tmp_path / "a", tmp_path / "b"
    one.mkdir(), two.mkdir()
    _orders(one), _orders(two)
    assert continue_orders(one, days=1, seed=3) == continue_orders(two, days=1, seed=3)
    assert continue_orders(one, days=1, seed=3).first_day == "2026-01-02"  # the next call adds the next day

"""The feature tables do not depend on how the build splits its work (features/build.py passes,
features/pit.py time grid), on randomly generated clean tables whose times hit the window bounds.

A build computes each table a few snapshots at a time and counts events per customer and grid cell
before the snapshots' join; both are only ways of doing the work. These tests compare the passes with
the single whole-table query, and the per-cell engagement counts with a row-by-row count in pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import compute_feature_tables
from features.engagement import ENGAGEMENT_COLUMNS
from features.pit import US_PER_DAY, time_grid

TS = "datetime64[us, UTC]"
KINDS = ["visit", "page_view", "product_view", "email_open", "email_click", "support_ticket", "complaint"]
WINDOWS = {  # engagement feature -> (event type, days): the definitions in features/engagement.py
    "visits_30d": ("visit", 30),
    "visits_90d": ("visit", 90),
    "page_views_90d": ("page_view", 90),
    "product_views_90d": ("product_view", 90),
    "email_opens_90d": ("email_open", 90),
    "email_clicks_90d": ("email_click", 90),
    "support_tickets_90d": ("support_ticket", 90),
    "complaints_90d": ("complaint", 90),
    "complaints_365d": ("complaint", 365),
}


def _world(snapshots: list[pd.Timestamp], *, seed: int, customers: int = 40) -> dict[str, pd.DataFrame]:
    """Clean tables of random customers. A third of the times sit exactly on a bound of some snapshot's
    window (`s - W days`, `s`) or a microsecond either side, where a wrong cell or bound shows."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(customers)]
    first, last = min(snapshots) - pd.Timedelta(days=400), max(snapshots)
    span_us = int((last - first).value // 1_000)
    bounds = [s - pd.Timedelta(days=d) for s in snapshots for d in (0, 30, 90, 180, 365)]

    def stamps(n: int) -> pd.Series:
        spread = first + pd.to_timedelta(rng.integers(0, span_us, n), unit="us")
        near = pd.DatetimeIndex(bounds)[rng.integers(0, len(bounds), n)]
        near = near + pd.to_timedelta(rng.choice([-1, 0, 0, 1], n), unit="us")
        return pd.Series(np.where(rng.random(n) < 0.35, near, spread)).astype(TS)

    def who(n: int) -> pd.Series:
        return pd.Series(rng.choice(ids, n), dtype=object)

    n_events, n_orders, n_leads = 2_500, 600, 60
    events = pd.DataFrame(
        {
            "customer_id": who(n_events),
            "event_ts": stamps(n_events),
            "event_type": pd.Series(rng.choice([*KINDS, "other"], n_events), dtype=object),
            "channel": "web",
        }
    )
    amount = np.round(rng.gamma(2.0, 30.0, n_orders), 2)
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n_orders)],
            "customer_id": who(n_orders),
            "order_ts": stamps(n_orders),
            "amount": amount,
            "discount": np.where(rng.random(n_orders) < 0.3, np.round(amount * 0.1, 2), 0.0),
            "quantity": 1,
            "category": pd.Series(rng.choice(["toys", "food", "tech", None], n_orders), dtype=object),
            "is_returned": rng.random(n_orders) < 0.1,
            "is_cancelled": rng.random(n_orders) < 0.1,
        }
    )
    created = stamps(n_leads)
    leads = pd.DataFrame(
        {
            "lead_id": [f"l{i}" for i in range(n_leads)],
            "customer_id": who(n_leads),
            "created_ts": created,
            "source": pd.Series(rng.choice(["ads", "fair"], n_leads), dtype=object),
            "campaign": "spring",
            "engagement_score": np.round(rng.random(n_leads), 3),
            "converted_ts": pd.Series(
                np.where(rng.random(n_leads) < 0.4, created + pd.Timedelta(days=20), pd.NaT)
            ).astype(TS),
        }
    )
    customers_frame = pd.DataFrame(
        {
            "customer_id": ids,
            "consent_profiling": rng.random(customers) < 0.95,
            "signup_ts": pd.Series(np.where(rng.random(customers) < 0.7, stamps(customers), pd.NaT)).astype(
                TS
            ),
            "first_seen_ts": stamps(customers),
            "region": pd.Series(rng.choice(["north", "south", None], customers), dtype=object),
            "acquisition_channel": "web",
            "customer_type": "b2c",
            "sources": [["contacts", "orders"]] * customers,
        }
    )
    return {"customers": customers_frame, "orders": orders, "events": events, "leads": leads}


def _tables(world: dict[str, pd.DataFrame], snapshots: list[pd.Timestamp], per_pass: int) -> dict:
    return compute_feature_tables(
        **world,
        snapshots=snapshots,
        created=pd.Timestamp("2030-01-01", tz="UTC"),
        snapshots_per_pass=per_pass,
    ).tables


MIDNIGHTS = [pd.Timestamp("2024-07-01", tz="UTC") + pd.Timedelta(days=30 * k) for k in range(5)]
# snapshots at other times of day: the grid shrinks below a day (here 90 minutes)
ODD_TIMES = [
    pd.Timestamp("2024-07-01 03:00", tz="UTC"),
    pd.Timestamp("2024-09-15 10:30", tz="UTC"),
    pd.Timestamp("2024-12-24 00:00", tz="UTC"),
]


@pytest.mark.parametrize("snapshots", [MIDNIGHTS, ODD_TIMES], ids=["midnights", "odd-times"])
def test_every_pass_size_gives_the_whole_table_query_result(snapshots):
    world = _world(snapshots, seed=3)
    whole = _tables(world, snapshots, per_pass=len(snapshots))
    assert set(whole) == {
        "customer_transactions",
        "customer_engagement",
        "customer_leads",
        "customer_profile",
    }
    assert len(whole["customer_engagement"]) > 3 * len(snapshots)  # many customers at many snapshots
    for per_pass in (1, 3):
        split = _tables(world, snapshots, per_pass=per_pass)
        for name, table in whole.items():
            pd.testing.assert_frame_equal(
                split[name], table, check_exact=True, obj=f"{name}, {per_pass}/pass"
            )


def _engagement_row_by_row(events: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The engagement definitions counted event by event in pandas, at the built table's rows."""
    out = {name: [] for name in ENGAGEMENT_COLUMNS}
    by_customer = {cid: group for cid, group in events.groupby("customer_id")}
    for cid, snapshot in zip(rows["customer_id"], rows["event_timestamp"], strict=True):
        seen = by_customer.get(cid, events.iloc[:0])
        seen = seen[seen["event_ts"] < snapshot]
        for name, (kind, days) in WINDOWS.items():
            inside = seen["event_ts"] >= snapshot - pd.Timedelta(days=days)
            out[name].append(int((inside & seen["event_type"].eq(kind)).sum()))
        opens, clicks = out["email_opens_90d"][-1], out["email_clicks_90d"][-1]
        out["email_click_rate_90d"].append(clicks / opens if opens else np.nan)
        last = seen["event_ts"].max()
        out["days_since_last_event"].append(
            np.nan if pd.isna(last) else (snapshot - last).value / 1_000 / US_PER_DAY
        )
    return pd.DataFrame(out)


@pytest.mark.parametrize("snapshots", [MIDNIGHTS, ODD_TIMES], ids=["midnights", "odd-times"])
def test_engagement_counted_per_cell_equals_counting_every_event(snapshots):
    world = _world(snapshots, seed=11)
    built = _tables(world, snapshots, per_pass=len(snapshots))["customer_engagement"]
    expected = _engagement_row_by_row(world["events"], built)
    assert expected["visits_90d"].sum() > 50 and (expected["visits_30d"] < expected["visits_90d"]).any()
    pd.testing.assert_frame_equal(
        built[ENGAGEMENT_COLUMNS].reset_index(drop=True), expected, check_exact=False, rtol=1e-12
    )


def test_time_grid_puts_every_window_bound_on_a_cell_edge():
    grid = time_grid(ODD_TIMES)
    assert grid.width_us == 90 * 60 * 1_000_000  # gcd of a day and the snapshots' distances
    for snapshot in ODD_TIMES:
        for days in (0, 30, 90, 180, 365):
            bound = int((snapshot - pd.Timedelta(days=days)).value // 1_000)
            assert (bound - grid.phase_us) % grid.width_us == 0
    assert time_grid(MIDNIGHTS).width_us == US_PER_DAY

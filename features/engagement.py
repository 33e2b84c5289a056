"""`customer_engagement`: behaviour-event features at each snapshot, from events strictly before it.

Definitions (snapshot `s`; a window of `W` days holds events with `s - W days <= event_ts < s`):

- `visits_30d`, `visits_90d`: `visit` events in the window.
- `page_views_90d`, `product_views_90d`, `email_opens_90d`, `email_clicks_90d`, `support_tickets_90d`,
  `complaints_90d`, `complaints_365d`: events of type `page_view`, `product_view`, `email_open`,
  `email_click`, `support_ticket`, `complaint` in the window.
- `email_click_rate_90d`: `email_clicks_90d / email_opens_90d`; NaN without opens. Not capped: a
  value above 1 means clicks were tracked without opens (images blocked), which is itself a signal.
- `days_since_last_event`: days (fractional) from the last event of any type to `s`; NaN without events.

Counts are 0 without activity.
"""

from __future__ import annotations

import ibis.expr.types as ir

from features.pit import TimeGrid, before_snapshot, days_between, epoch_us, ratio, within

REQUIRED_EVENT_COLUMNS = ("customer_id", "event_ts", "event_type")

ENGAGEMENT_COLUMNS = [
    "visits_30d",
    "visits_90d",
    "page_views_90d",
    "product_views_90d",
    "email_opens_90d",
    "email_clicks_90d",
    "email_click_rate_90d",
    "support_tickets_90d",
    "complaints_90d",
    "complaints_365d",
    "days_since_last_event",
]

# feature -> (event_type, window in days); the click rate and recency are derived below.
_COUNTS = {
    "visits_30d": ("visit", 30),
    "visits_90d": ("visit", 90),
    "page_views_90d": ("page_view", 90),
    "product_views_90d": ("product_view", 90),
    "email_opens_90d": ("email_open", 90),
    "email_clicks_90d": ("email_click", 90),
    "support_tickets_90d": ("support_ticket", 90),
    "complaints_90d": ("complaint", 90),
}
_KINDS = sorted({kind for kind, _ in _COUNTS.values()})


def engagement_rows(events: ir.Table, *, grid: TimeGrid) -> ir.Table:
    """The events as the features read them: one row per customer and `grid` cell that has events,
    with the count of each event type (`n_<type>`) and `ts_us`, the cell's latest event time.

    Every window bound is a grid point (`features.pit.time_grid`), so all events of a cell fall on the
    same side of each bound: counting a cell's events by its latest time is exact, and at daily
    snapshots a customer's events of one day are one row for the snapshots' join instead of many.
    """
    rows = events.filter(events.event_ts.notnull()).select(
        rid=events.customer_id.cast("string"),
        ts_us=epoch_us(events.event_ts),
        kind=events.event_type.cast("string"),
    )
    rows = rows.mutate(cell=grid.cell(rows.ts_us))
    return rows.group_by(["rid", "cell"]).aggregate(
        ts_us=rows.ts_us.max(),
        **{_count_column(kind): rows.ts_us.count(where=rows.kind == kind) for kind in _KINDS},
    )


def engagement_features(rows: ir.Table, *, spine: ir.Table) -> ir.Table:
    """Event features for every spine row (`features.pit.spine`) from `engagement_rows`: `customer_id`,
    `snapshot_us`, then `ENGAGEMENT_COLUMNS`. An Ibis expression (DuckDB or Spark): no I/O."""
    j = before_snapshot(rows, spine)
    counts = {name: j[_count_column(kind)].sum(where=within(j, w)) for name, (kind, w) in _COUNTS.items()}
    g = j.group_by(["customer_id", "snapshot_us"]).aggregate(
        **counts,
        complaints_365d=j[_count_column("complaint")].sum(where=within(j, 365)),
        last_us=j.ts_us.max(),
    )
    columns = {
        **{name: g[name].fill_null(0).cast("int64") for name in _COUNTS},
        "email_click_rate_90d": ratio(g.email_clicks_90d.fill_null(0), g.email_opens_90d.fill_null(0)),
        "complaints_365d": g.complaints_365d.fill_null(0).cast("int64"),
        "days_since_last_event": days_between(g.snapshot_us, g.last_us),
    }
    return g.select("customer_id", "snapshot_us", **{c: columns[c] for c in ENGAGEMENT_COLUMNS})


def _count_column(kind: str) -> str:
    return f"n_{kind}"

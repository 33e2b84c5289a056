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

import numpy as np
import pandas as pd

from features.snapshots import US_PER_DAY, Spine, to_epoch_us
from features.timeline import Probe, Timeline, pick

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


def engagement_features(events: pd.DataFrame, *, spine: Spine) -> pd.DataFrame:
    """Event features for every spine row, in spine order: `customer_id`, `snapshot_us`, then
    `ENGAGEMENT_COLUMNS`. Pure: no I/O."""
    code = spine.encode(events["customer_id"])
    ts_us = to_epoch_us(events["event_ts"])
    keep = (code >= 0) & ts_us.notna().to_numpy()  # profiled customers, events with a time
    code, ts = code[keep], ts_us.to_numpy(dtype="int64", na_value=0)[keep]
    kinds = events["event_type"].astype(str).to_numpy()[keep]
    q, s_sec, s_us = spine.code, spine.snapshot_sec, spine.snapshot_us
    n_codes = len(spine.ids)

    by_kind: dict[str, Probe] = {}
    out = spine.frame()
    for name, (kind, window) in _COUNTS.items():
        if kind not in by_kind:  # one timeline per event type, shared by its windows
            mask = kinds == kind
            by_kind[kind] = Probe(Timeline(code[mask], ts[mask], n_codes=n_codes, what="events"), q, s_sec)
        out[name] = by_kind[kind].count(window)
    opens = out["email_opens_90d"].to_numpy(dtype="float64")
    rate = np.full(len(q), np.nan)
    np.divide(out["email_clicks_90d"].to_numpy(dtype="float64"), opens, out=rate, where=opens != 0)
    out["email_click_rate_90d"] = rate
    out["complaints_365d"] = by_kind["complaint"].count(365)
    every = Probe(Timeline(code, ts, n_codes=n_codes, what="events"), q, s_sec)
    out["days_since_last_event"] = (s_us - pick(every.timeline.ts_us, every.last())) / US_PER_DAY
    return out[["customer_id", "snapshot_us", *ENGAGEMENT_COLUMNS]]

"""`customer_leads`: marketing-lead features at each snapshot, from leads created strictly before it.

Definitions (snapshot `s`; the *latest lead* is the lead with the greatest `created_ts < s`, ties
broken by the greater `lead_id` so the result is deterministic):

- `lead_engagement_score`: `engagement_score` of the latest lead; NaN without a lead before `s`.
- `lead_age_days`: days (fractional) from the latest lead's `created_ts` to `s`; NaN without a lead.
- `lead_source`: `source` of the latest lead (string); null without a lead.
- `is_open_lead`: 1 if some lead was created before `s` and had not converted before `s`
  (`converted_ts` null or `>= s`), else 0.

The source keeps one `engagement_score` per lead (its value at export time, not a history), so the
score may reflect activity after `s`; a source with score history should feed it as separate leads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.snapshots import US_PER_DAY, Spine, to_epoch_us
from features.timeline import Timeline, pick

REQUIRED_LEAD_COLUMNS = ("lead_id", "customer_id", "created_ts", "source", "engagement_score", "converted_ts")

LEAD_COLUMNS = ["lead_engagement_score", "lead_age_days", "lead_source", "is_open_lead"]


def lead_features(leads: pd.DataFrame, *, spine: Spine) -> pd.DataFrame:
    """Lead features for every spine row, in spine order: `customer_id`, `snapshot_us`, then
    `LEAD_COLUMNS`. Pure: no I/O."""
    code = spine.encode(leads["customer_id"])
    created = to_epoch_us(leads["created_ts"])
    keep = (code >= 0) & created.notna().to_numpy()  # a lead without a creation time is never "before"
    code = code[keep]
    created_us = created.to_numpy(dtype="int64", na_value=0)[keep]
    converted_us = to_epoch_us(leads["converted_ts"]).to_numpy(dtype="float64", na_value=np.nan)[keep]
    lead_ids = leads["lead_id"].astype(str).to_numpy()[keep]
    sources = leads["source"].to_numpy(dtype=object)[keep]
    scores = pd.to_numeric(leads["engagement_score"]).astype("float64").to_numpy()[keep]
    q, s_sec, s_us = spine.code, spine.snapshot_sec, spine.snapshot_us
    n_codes = len(spine.ids)

    # ties at one instant: the greater lead_id sorts last, so it is the "latest"
    created_tl = Timeline(code, created_us, n_codes=n_codes, tiebreak=lead_ids, what="leads")
    latest = created_tl.last_before(q, s_sec)
    order = created_tl.order  # sorted position -> kept row
    out = spine.frame()
    out["lead_engagement_score"] = pick(scores[order], latest)
    out["lead_age_days"] = (s_us - pick(created_tl.ts_us, latest)) / US_PER_DAY
    out["lead_source"] = pd.Series(pick(sources[order], latest, missing=None), dtype=object)
    # open = created before s and not converted before s. A lead is "created and converted before s"
    # exactly when the later of its two times is before s, so: leads created - leads closed > 0.
    converted = ~np.isnan(converted_us)
    closed_at = np.maximum(created_us[converted], converted_us[converted].astype("int64"))
    closed_tl = Timeline(code[converted], closed_at, n_codes=n_codes, what="leads")
    before = created_tl.count(q, np.iinfo(np.int32).min, s_sec)
    closed = closed_tl.count(q, np.iinfo(np.int32).min, s_sec)
    out["is_open_lead"] = (before - closed > 0).astype("int64")
    return out[["customer_id", "snapshot_us", *LEAD_COLUMNS]]

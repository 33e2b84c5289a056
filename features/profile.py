"""`customer_profile`: CRM contact attributes at each snapshot.

Definitions (snapshot `s`):

- `region`, `customer_type`, `acquisition_channel`: the customer's values in the clean `customers`
  table (strings; null when the CRM has none). The CRM keeps only current values, not their history,
  so these are the values as of ingestion (a documented limit of point-in-time correctness). They are
  null until the CRM contact exists (`signup_ts` before `s`): a prospect gets a CRM contact when it
  converts, so a profile seen before then would tell a conversion model the future.
- `signup_tenure_days`: days (fractional) from `signup_ts` to `s`; NaN when there is no signup or it
  is not before `s`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.snapshots import US_PER_DAY, Spine, to_epoch_us

PROFILE_STRING_COLUMNS = ["region", "customer_type", "acquisition_channel"]
PROFILE_COLUMNS = [*PROFILE_STRING_COLUMNS, "signup_tenure_days"]


def profile_features(customers: pd.DataFrame, *, spine: Spine) -> pd.DataFrame:
    """Profile features for every spine row, in spine order: `customer_id`, `snapshot_us`, then
    `PROFILE_COLUMNS`. Pure: no I/O."""
    code = spine.encode(customers["customer_id"])
    known = code >= 0
    out = spine.frame()
    signup = np.full(len(spine.ids), np.nan)
    if "signup_ts" in customers:
        signup[code[known]] = to_epoch_us(customers["signup_ts"]).to_numpy(dtype="float64", na_value=np.nan)[
            known
        ]
    # Epoch microseconds stay exact in float64 (below 2**53 until the year 2255).
    age_us = spine.snapshot_us - signup[spine.code]
    contact_exists = age_us > 0  # NaN (no signup) compares False: no contact, no profile
    for column in PROFILE_STRING_COLUMNS:
        by_code = np.full(len(spine.ids), None, dtype=object)
        if column in customers:
            values = customers[column]
            by_code[code[known]] = values.astype(object).where(values.notna(), None).to_numpy()[known]
        out[column] = np.where(contact_exists, by_code[spine.code], None)
    out["signup_tenure_days"] = np.where(contact_exists, age_us / US_PER_DAY, np.nan)
    return out[["customer_id", "snapshot_us", *PROFILE_COLUMNS]]

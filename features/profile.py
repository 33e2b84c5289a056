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

import ibis
import ibis.expr.types as ir

from features.pit import days_between

PROFILE_STRING_COLUMNS = ["region", "customer_type", "acquisition_channel"]
PROFILE_COLUMNS = [*PROFILE_STRING_COLUMNS, "signup_tenure_days"]


def profile_features(customers: ir.Table, *, spine: ir.Table) -> ir.Table:
    """Profile features for every spine row (`features.pit.spine`, which carries `signup_us`):
    `customer_id`, `snapshot_us`, then `PROFILE_COLUMNS`. An Ibis expression: no I/O."""
    values = customers.select(
        rid=customers.customer_id.cast("string"),
        **{
            c: (customers[c].cast("string") if c in customers.columns else ibis.null("string"))
            for c in PROFILE_STRING_COLUMNS
        },
    )
    j = spine.left_join(values, spine.customer_id == values.rid)
    contact_exists = j.signup_us < j.snapshot_us  # no signup (null): no contact, no profile
    return j.select(
        "customer_id",
        "snapshot_us",
        **{c: ibis.ifelse(contact_exists, j[c], ibis.null("string")) for c in PROFILE_STRING_COLUMNS},
        signup_tenure_days=ibis.ifelse(
            contact_exists, days_between(j.snapshot_us, j.signup_us), ibis.null("float64")
        ),
    )

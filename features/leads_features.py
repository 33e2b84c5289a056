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

import ibis
import ibis.expr.types as ir

from features.pit import before_snapshot, days_between, epoch_us

REQUIRED_LEAD_COLUMNS = ("lead_id", "customer_id", "created_ts", "source", "engagement_score", "converted_ts")

LEAD_COLUMNS = ["lead_engagement_score", "lead_age_days", "lead_source", "is_open_lead"]


def lead_rows(leads: ir.Table) -> ir.Table:
    """The leads with a creation time as `lead_features` reads them (times in epoch microseconds)."""
    return leads.filter(leads.created_ts.notnull()).select(  # no creation time: never "before"
        rid=leads.customer_id.cast("string"),
        ts_us=epoch_us(leads.created_ts),
        converted_us=epoch_us(leads.converted_ts),
        lead_id=leads.lead_id.cast("string"),
        source=leads.source.cast("string"),
        score=leads.engagement_score.cast("float64"),
    )


def lead_features(rows: ir.Table, *, spine: ir.Table) -> ir.Table:
    """Lead features for every spine row (`features.pit.spine`) from `lead_rows`: `customer_id`,
    `snapshot_us`, then `LEAD_COLUMNS`. An Ibis expression (DuckDB or Spark): no I/O."""
    j = before_snapshot(rows, spine)
    # the latest lead: greatest created time, ties to the greater lead_id (deterministic on any engine)
    rank = ibis.row_number().over(
        group_by=[j.customer_id, j.snapshot_us], order_by=[ibis.desc(j.ts_us), ibis.desc(j.lead_id)]
    )
    # open = created before s (the join) and not converted before s
    still_open = j.ts_us.notnull() & (j.converted_us.isnull() | (j.converted_us >= j.snapshot_us))
    ranked = j.mutate(_rank=rank, _open=ibis.ifelse(still_open, 1, 0))
    opened = ranked.group_by(["customer_id", "snapshot_us"]).aggregate(is_open_lead=ranked._open.max())
    latest = ranked.filter(ranked._rank == 0)
    out = latest.join(opened, ["customer_id", "snapshot_us"])
    return out.select(
        "customer_id",
        "snapshot_us",
        lead_engagement_score=out.score,
        lead_age_days=days_between(out.snapshot_us, out.ts_us),
        lead_source=out.source,
        is_open_lead=out.is_open_lead.cast("int64"),
    )

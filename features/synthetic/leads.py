"""Marketing leads: every person who came in through a lead, converted or not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.synthetic import clock, mess, text, vocab
from features.synthetic.clock import Window
from features.synthetic.persons import Persons

LEAD_TS_MIX = clock.TsMix(offset=0.45, utc_z=0.35, naive=0.20)
LEAD_PHONE_STYLES = (0.55, 0.20, 0.10, 0.10, 0.05)


def render_leads(
    rng: np.random.Generator, persons: Persons, *, window: Window, rates: mess.MessRates, first_id: int = 0
) -> tuple[pa.Table, pa.Array, np.ndarray]:
    """The leads.csv table (ids in creation order, some re-sent rows), the distinct lead ids and their
    true persons."""
    person = np.flatnonzero(persons.has_lead)
    person = person[np.argsort(persons.lead_created[person], kind="stable")]
    n = person.size
    created_seconds = window.at_local_hour(rng, persons.lead_created[person])
    converted_days = persons.converted_at[person]
    converted = np.isfinite(converted_days)
    converted_seconds = np.where(
        converted,
        window.start_epoch + np.floor(np.nan_to_num(converted_days) * clock.DAY_SECONDS).astype(np.int64),
        0,
    )
    converted_seconds = np.maximum(converted_seconds, created_seconds + 3600)

    # Campaign names follow the quarter the lead came in: "2024Q3_autumn_promo".
    created_day = np.datetime64(window.start, "D") + (
        created_seconds // clock.DAY_SECONDS - window.start_epoch // clock.DAY_SECONDS
    ).astype("timedelta64[D]")
    year = created_day.astype("datetime64[Y]").astype(np.int64) + 1970
    quarter = (created_day.astype("datetime64[M]").astype(np.int64) % 12) // 3 + 1
    theme = np.asarray(vocab.QUARTER_THEMES, dtype=np.int64)[quarter - 1, rng.integers(0, 3, n)]
    campaign_valid = ~mess.flags(rng, n, rates.missing_campaign)
    campaign = text.join(
        [
            text.digits(year, 4),
            text.constant("Q", n),
            text.digits(quarter, 1),
            text.constant("_", n),
            text.choice(list(vocab.CAMPAIGN_THEMES), theme),
        ],
        valid=campaign_valid,
    )

    engagement = persons.lead_engagement[person].copy()
    bad = mess.flags(rng, n, rates.bad_engagement)
    engagement[bad] = np.where(
        rng.random(bad.sum()) < 0.5, 100 + rng.integers(1, 60, bad.sum()), -rng.integers(1, 20, bad.sum())
    )
    phone_missing = mess.flags(rng, n, rates.missing_lead_phone)
    email_missing = mess.flags(rng, n, rates.missing_lead_email) & ~phone_missing

    table = pa.table(
        {
            "lead_id": text.sequential_ids("L", n, 7, start=first_id),
            "email": mess.emails(
                rng, persons.ids.email.take(pa.array(person)), rates=rates, valid=~email_missing
            ),
            "phone": mess.phones(
                rng, persons.ids.phone[person], style_p=LEAD_PHONE_STYLES, valid=~phone_missing
            ),
            "source": text.labels(vocab.LEAD_SOURCES, persons.lead_source[person]),
            "campaign": campaign,
            "created_at": clock.render(rng, created_seconds, mix=LEAD_TS_MIX),
            "engagement_score": pa.array(engagement, pa.int64()),
            "converted": pa.array(converted.astype(np.int64), pa.int64()),
            "converted_at": clock.render(rng, converted_seconds, mix=LEAD_TS_MIX, valid=converted),
        }
    )
    rows = mess.resend_duplicates(rng, n, rate=rates.duplicate_leads, max_delay_rows=500)
    return table.take(pa.array(rows)), table.column("lead_id").combine_chunks(), person

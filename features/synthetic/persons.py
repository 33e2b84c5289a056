"""The true population: who each person is, how they behave and when they churn or convert.

Everything downstream (CRM contacts, orders, events, leads) is rendered from these arrays, so the
ground truth is exact by construction. Times are float days since the window start.

Behaviour model (the signal a model should find):
- archetypes differ in order rate, basket size, discount appetite and churn hazard;
- in the `CHURN_RAMP_DAYS` before a churn date, orders and visits fade while returns, support tickets
  and complaints rise; after churn, orders stop;
- leads convert with a probability that rises with their engagement score and web-visit rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from features.synthetic import tastes, vocab
from features.synthetic.clock import Window
from features.synthetic.pii import Identities, make_identities

ARCHETYPES = ("high_value_loyal", "bargain_hunter", "regular", "at_risk", "dormant", "new", "prospect")
LOYAL, BARGAIN, REGULAR, AT_RISK, DORMANT, NEW, PROSPECT = range(len(ARCHETYPES))

# Per archetype (same order as ARCHETYPES): orders per 30 days, median gross order amount,
# probability an order carries a discount, base probability an order is returned.
ORDER_RATE_30D = np.array([4.0, 2.2, 1.4, 1.6, 0.45, 1.6, 0.0])
AMOUNT_MEDIAN = np.array([320.0, 110.0, 170.0, 160.0, 140.0, 150.0, 0.0])
DISCOUNT_PROB = np.array([0.10, 0.75, 0.18, 0.20, 0.15, 0.25, 0.0])
RETURN_BASE = np.array([0.03, 0.07, 0.05, 0.06, 0.05, 0.05, 0.0])
# Mean days from the start of activity to churn (exponential hazard) where churn is memoryless.
CHURN_MEAN_DAYS = {LOYAL: 4000.0, BARGAIN: 750.0, REGULAR: 1100.0, NEW: 900.0}

# Customers who come straight in (not through a lead), by archetype.
DIRECT_MIX = np.array([0.12, 0.18, 0.33, 0.13, 0.10, 0.14, 0.0])
# Converted leads that are not recent enough to count as "new".
CONVERTED_MIX = np.array([0.10, 0.25, 0.40, 0.25, 0.0, 0.0, 0.0])
LEAD_SHARE = 0.30
CHURN_RAMP_DAYS = 150.0
NEW_CUSTOMER_DAYS = 180.0
CONVERSION_WINDOW_DAYS = 60.0
# Logit intercept of conversion within 60 days; with the slopes below about 28% of leads convert.
CONVERSION_INTERCEPT = -1.45
WITHDRAWN_SHARE = 0.03
SECOND_CONTACT_SHARE = 0.04
PROSPECT_IN_CRM_SHARE = 0.40

CITY_NAMES = tuple(city for cities in vocab.CITIES for city in cities)
CITY_REGION = np.array([r for r, cities in enumerate(vocab.CITIES) for _ in cities])


@dataclass(frozen=True)
class Persons:
    """Column arrays, one entry per true person (index = person number)."""

    n: int
    ids: Identities
    archetype: np.ndarray
    is_customer: np.ndarray
    signup: np.ndarray  # days; nan for persons who never became customers
    active_start: np.ndarray  # max(signup, 0); nan for non-customers
    churn: np.ndarray  # true churn time in days (may lie after the window: not yet churned); inf = none
    order_rate: np.ndarray  # orders per day before any churn ramp
    spend: np.ndarray  # median gross amount of an order
    discount_prob: np.ndarray
    return_base: np.ndarray
    category_pref: np.ndarray  # favourite category (index into vocab.CATEGORIES)
    # preference over every category (n x categories, rows sum to 1; tastes.draw_preferences)
    category_weights: np.ndarray
    visit_rate: np.ndarray  # customer web/app visits per day
    app_share: np.ndarray
    email_open_rate: np.ndarray
    support_rate: np.ndarray
    complaint_rate: np.ndarray
    erp_uses_phone: np.ndarray
    region: np.ndarray
    city: np.ndarray
    acquisition_channel: np.ndarray
    customer_type: np.ndarray
    consent_withdrawn: np.ndarray
    n_contacts: np.ndarray  # CRM contacts of this person: 0, 1 or 2
    second_uses_alt_email: np.ndarray
    has_lead: np.ndarray
    lead_created: np.ndarray  # nan without a lead
    lead_engagement: np.ndarray  # 0-100 (int), -1 without a lead
    lead_visit_rate: np.ndarray  # visits per day while a lead
    lead_source: np.ndarray
    lead_conversion_p: np.ndarray  # true probability of converting within 60 days
    converted_at: np.ndarray  # nan if the lead has not converted by the end of the window


def _noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Log-normal multipliers with mean 1."""
    return np.exp(rng.normal(-sigma * sigma / 2, sigma, n))


def make_persons(
    rng: np.random.Generator, *, n: int, window: Window, first: int = 0, phone_offset: int | None = None
) -> Persons:
    """Draw `n` persons: ~70% direct customers, ~30% leads of whom a minority converts.

    `first`/`phone_offset`: this is a chunk of a larger population (pii.make_identities)."""
    horizon = float(window.days)
    has_lead = rng.random(n) < LEAD_SHARE

    # Leads: created throughout; latent intent drives both the engagement score and web visits.
    lead_created = np.where(has_lead, rng.uniform(0, horizon, n), np.nan)
    intent = rng.normal(0, 1, n)
    engagement = np.clip(np.round(40 + 20 * (0.8 * intent + 0.6 * rng.normal(0, 1, n))), 0, 100)
    lead_visit_rate = 0.05 * np.exp(0.8 * (0.8 * intent + 0.6 * rng.normal(0, 1, n)))
    lead_source = rng.choice(len(vocab.LEAD_SOURCES), size=n, p=vocab.LEAD_SOURCE_WEIGHTS)
    logit = (
        CONVERSION_INTERCEPT
        + 0.045 * (engagement - 40)
        + 0.25 * (lead_visit_rate * 30 - 1.5)
        + np.asarray(vocab.LEAD_SOURCE_EFFECT)[lead_source]
    )
    conversion_p = 1 / (1 + np.exp(-logit))
    quick = rng.random(n) < conversion_p
    late = ~quick & (rng.random(n) < 0.05)
    delay = np.where(
        quick, 1 + np.minimum(rng.gamma(2.0, 8.0, n), CONVERSION_WINDOW_DAYS - 2), rng.uniform(61, 150, n)
    )
    converted_at = np.where(has_lead & (quick | late), lead_created + delay, np.nan)
    converted_at = np.where(converted_at < horizon, converted_at, np.nan)
    converted = np.isfinite(converted_at)

    # Archetypes: direct customers by mix; converted leads by mix (or "new" if recent); the rest prospects.
    archetype = rng.choice(len(ARCHETYPES), size=n, p=DIRECT_MIX)
    archetype = np.where(has_lead, PROSPECT, archetype)
    converted_type = np.where(
        converted_at > horizon - NEW_CUSTOMER_DAYS, NEW, rng.choice(len(ARCHETYPES), size=n, p=CONVERTED_MIX)
    )
    archetype = np.where(converted, converted_type, archetype)
    is_customer = archetype != PROSPECT

    # Sign-up: dormant customers are old; new ones are recent; the others before or during the window.
    years3 = 3 * 365.0
    before = rng.uniform(-years3, 0, n)
    during = rng.uniform(0, max(horizon - NEW_CUSTOMER_DAYS, 1), n)
    signup = np.where(rng.random(n) < 0.45, before, during)
    signup = np.where(archetype == DORMANT, rng.uniform(-years3, -90, n), signup)
    signup = np.where(archetype == NEW, rng.uniform(horizon - NEW_CUSTOMER_DAYS, horizon - 7, n), signup)
    signup = np.where(converted, converted_at, signup)
    signup = np.where(is_customer, signup, np.nan)
    active_start = np.maximum(signup, 0.0)

    # Churn: memoryless for most, spread across the window for at-risk, early for dormant.
    churn = np.full(n, np.inf)
    for code, mean in CHURN_MEAN_DAYS.items():
        churn = np.where(archetype == code, active_start + 30 + rng.exponential(mean, n), churn)
    at_risk_span = np.maximum(horizon + 120 - active_start, 91.0)
    churn = np.where(archetype == AT_RISK, active_start + 90 + rng.random(n) * (at_risk_span - 90), churn)
    churn = np.where(archetype == DORMANT, rng.uniform(20, 300, n), churn)
    churn = np.where(is_customer, churn, np.inf)

    order_rate = ORDER_RATE_30D[archetype] / 30 * _noise(rng, n, 0.35)
    visit_rate = (0.02 + 0.5 * order_rate) * _noise(rng, n, 0.4)
    email_open_rate = 0.025 * _noise(rng, n, 0.5) * np.where(archetype == LOYAL, 1.3, 1.0)

    region = rng.choice(len(vocab.REGIONS), size=n, p=vocab.REGION_WEIGHTS)
    city_offsets = np.cumsum([0] + [len(c) for c in vocab.CITIES])
    city = city_offsets[region] + np.floor(rng.random(n) * np.diff(city_offsets)[region]).astype(np.int64)
    acquisition = rng.choice(len(vocab.ACQUISITION_CHANNELS), size=n, p=vocab.ACQUISITION_WEIGHTS)
    lead_channel = np.asarray(
        [vocab.ACQUISITION_CHANNELS.index(c) for c in vocab.LEAD_SOURCE_TO_CHANNEL], dtype=np.int64
    )[lead_source]
    acquisition = np.where(has_lead, lead_channel, acquisition)

    n_contacts = np.where(
        is_customer,
        1 + (rng.random(n) < SECOND_CONTACT_SHARE),
        (has_lead & (rng.random(n) < PROSPECT_IN_CRM_SHARE)).astype(np.int64),
    ).astype(np.int64)

    drawn = Persons(
        n=n,
        ids=make_identities(rng, n, first=first, phone_offset=phone_offset),
        archetype=archetype.astype(np.int64),
        is_customer=is_customer,
        signup=signup,
        active_start=active_start,
        churn=churn,
        order_rate=np.where(is_customer, order_rate, 0.0),
        spend=AMOUNT_MEDIAN[archetype] * _noise(rng, n, 0.35),
        discount_prob=np.clip(DISCOUNT_PROB[archetype] * rng.uniform(0.7, 1.3, n), 0, 0.95),
        return_base=np.clip(RETURN_BASE[archetype] * _noise(rng, n, 0.3), 0, 0.5),
        category_pref=rng.choice(len(vocab.CATEGORIES), size=n, p=vocab.CATEGORY_WEIGHTS),
        category_weights=np.empty((0, len(vocab.CATEGORIES))),  # drawn last (below)
        visit_rate=np.where(is_customer, visit_rate, 0.0),
        app_share=rng.beta(2, 2, n),
        email_open_rate=email_open_rate,
        support_rate=0.0015 * _noise(rng, n, 0.5),
        complaint_rate=0.0004 * _noise(rng, n, 0.5) * np.where(archetype == BARGAIN, 1.5, 1.0),
        erp_uses_phone=rng.random(n) < 0.35,
        region=region,
        city=city,
        acquisition_channel=acquisition,
        customer_type=(rng.random(n) < 0.15).astype(np.int64),
        consent_withdrawn=rng.random(n) < WITHDRAWN_SHARE,
        n_contacts=n_contacts,
        second_uses_alt_email=rng.random(n) < 0.5,
        has_lead=has_lead,
        lead_created=lead_created,
        lead_engagement=np.where(has_lead, engagement, -1).astype(np.int64),
        lead_visit_rate=np.where(has_lead, lead_visit_rate, 0.0),
        lead_source=lead_source,
        lead_conversion_p=np.where(has_lead, conversion_p, np.nan),
        converted_at=converted_at,
    )
    # Drawn after everything else so the other attributes stay the same for a given seed.
    return replace(drawn, category_weights=tastes.draw_preferences(rng, drawn.category_pref))

"""ERP orders: one row per order, referencing the buyer by email or phone as the ERP knows them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic import clock, mess, tastes, text, vocab
from features.synthetic.clock import Window
from features.synthetic.persons import BARGAIN, CHURN_RAMP_DAYS, Persons

SEASON_PEAK = 1.3  # Singles' Day and year-end shopping: November and December
ORDER_TS_MIX = clock.TsMix(offset=0.60, utc_z=0.25, naive=0.15)
# The ERP mostly stores plain 11-digit numbers.
ERP_PHONE_STYLES = (0.70, 0.10, 0.08, 0.07, 0.05)


@dataclass(frozen=True)
class Orders:
    """True orders sorted by time (row i has order id i + 1)."""

    person: np.ndarray
    days: np.ndarray
    seconds: np.ndarray
    amount: np.ndarray
    discount: np.ndarray
    quantity: np.ndarray
    category: np.ndarray
    status: np.ndarray  # index into vocab.ORDER_STATUSES


def _month(window: Window, days: np.ndarray) -> np.ndarray:
    day = np.datetime64(window.start, "D") + np.floor(days).astype("timedelta64[D]")
    return day.astype("datetime64[M]").astype(np.int64) % 12 + 1


def simulate_orders(rng: np.random.Generator, persons: Persons, *, window: Window) -> Orders:
    """Orders as a thinned Poisson process per customer: seasonal, fading before churn, none after."""
    stop = np.minimum(persons.churn, float(window.days))
    owner, days = clock.poisson_times(
        rng, rate=persons.order_rate * SEASON_PEAK, begin=persons.active_start, end=stop
    )
    fade = clock.ramp(days, persons.churn[owner], width=CHURN_RAMP_DAYS)
    season = np.where(np.isin(_month(window, days), (11, 12)), SEASON_PEAK, 1.0)
    keep = rng.random(days.size) < season * (1 - 0.85 * fade) / SEASON_PEAK
    owner, days, fade = owner[keep], days[keep], fade[keep]
    # A realistic hour of day, but never before sign-up nor after churn.
    seconds = window.clamp(
        window.at_local_hour(rng, days), lo_days=persons.active_start[owner], hi_days=persons.churn[owner]
    )
    order = np.argsort(seconds, kind="stable")
    owner, days, fade, seconds = owner[order], days[order], fade[order], seconds[order]
    n = owner.size

    quantity = 1 + rng.poisson(0.5, n)
    amount = np.round(persons.spend[owner] * np.exp(rng.normal(-0.125, 0.5, n)) * (0.6 + 0.4 * quantity), 2)
    amount = np.maximum(amount, 1.0)
    bargain = persons.archetype[owner] == BARGAIN
    share = np.where(bargain, rng.uniform(0.10, 0.40, n), rng.uniform(0.05, 0.20, n))
    discounted = rng.random(n) < persons.discount_prob[owner]
    discount = np.round(np.where(discounted, amount * share, 0.0), 2)
    # The draw of the former mixture, kept so every later draw (statuses) stays the same for a given seed.
    rng.choice(len(vocab.CATEGORIES), size=n, p=vocab.CATEGORY_WEIGHTS)
    pick = rng.random(n)
    # each person's own preference over categories (tastes.py): the recommender's ground truth
    category = tastes.sample_categories(persons.category_weights, owner, pick)
    # Returns and cancellations climb in the months before churn.
    return_p = persons.return_base[owner] + 0.20 * fade
    cancel_p = 0.03 + 0.03 * fade
    u = rng.random(n)
    status = np.where(u < return_p, 1, np.where(u < return_p + cancel_p, 2, 0))
    return Orders(owner, days, seconds, amount, discount, quantity, category, status)


def render_orders(
    rng: np.random.Generator,
    orders: Orders,
    persons: Persons,
    *,
    window: Window,
    rates: mess.MessRates,
    first_id: int = 0,
) -> tuple[pa.Table, pa.Array, np.ndarray]:
    """The orders.csv.gz table (with re-sent duplicates), the distinct order ids and their true persons."""
    n = orders.person.size
    owner = orders.person
    uses_phone = persons.erp_uses_phone[owner] ^ (rng.random(n) < 0.08)
    # Someone with a second CRM contact under another email sometimes shops with that email.
    alt = (persons.n_contacts[owner] == 2) & persons.second_uses_alt_email[owner] & (rng.random(n) < 0.25)
    email_of = pc.if_else(
        pa.array(alt), persons.ids.alt_email.take(pa.array(owner)), persons.ids.email.take(pa.array(owner))
    )

    def by_email(rows: np.ndarray) -> pa.Array:
        return mess.emails(rng, email_of.take(pa.array(rows)), rates=rates)

    def by_phone(rows: np.ndarray) -> pa.Array:
        return mess.phones(rng, persons.ids.phone[owner[rows]], style_p=ERP_PHONE_STYLES)

    ref = mess.by_kind(uses_phone.astype(np.int64), {0: by_email, 1: by_phone})
    ref = pc.if_else(pa.array(mess.flags(rng, n, rates.missing_order_ref)), pa.scalar(None, pa.string()), ref)

    seconds = orders.seconds.copy()
    future = mess.flags(rng, n, rates.future_order)
    end_epoch = window.start_epoch + window.days * clock.DAY_SECONDS
    seconds[future] = end_epoch + rng.integers(3600, 400 * clock.DAY_SECONDS, future.sum())
    amount = np.where(mess.flags(rng, n, rates.negative_amount), -orders.amount, orders.amount)
    discount_valid = ~mess.flags(rng, n, rates.missing_discount)
    category_valid = ~mess.flags(rng, n, rates.missing_category)

    table = pa.table(
        {
            "order_id": text.sequential_ids("O", n, 8, start=first_id),
            "customer_ref": ref,
            "order_ts": clock.render(rng, seconds, mix=ORDER_TS_MIX),
            "amount": pa.array(amount, pa.float64()),
            "discount": pa.array(orders.discount, pa.float64(), mask=~discount_valid),
            "quantity": pa.array(orders.quantity, pa.int64()),
            "category": text.labels(vocab.CATEGORIES, orders.category, valid=category_valid),
            "status": text.labels(vocab.ORDER_STATUSES, orders.status),
        }
    )
    rows = mess.resend_duplicates(rng, n, rate=rates.duplicate_orders)
    return table.take(pa.array(rows)), table.column("order_id").combine_chunks(), owner

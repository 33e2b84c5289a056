"""Behaviour events (web, app, email, support), referenced by CRM contact id, email or phone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic import clock, mess, text, vocab
from features.synthetic.clock import Window
from features.synthetic.contacts import Contacts
from features.synthetic.orders import Orders
from features.synthetic.persons import CHURN_RAMP_DAYS, Persons

EVENT_TS_MIX = clock.TsMix(offset=0.20, utc_z=0.70, naive=0.10)
SUPPORT_PHONE_STYLES = (0.50, 0.20, 0.10, 0.15, 0.05)
VISIT, PAGE_VIEW, PRODUCT_VIEW, EMAIL_OPEN, EMAIL_CLICK, SUPPORT_TICKET, COMPLAINT = range(
    len(vocab.EVENT_TYPES)
)
WEB, APP, EMAIL, SUPPORT = range(len(vocab.CHANNELS))
# How the event names its person: 0 contact id, 1 email, 2 phone.
BY_CONTACT, BY_EMAIL, BY_PHONE = range(3)


@dataclass(frozen=True)
class Events:
    """True events sorted by time (row i has event id i + 1)."""

    person: np.ndarray
    seconds: np.ndarray
    event_type: np.ndarray
    channel: np.ndarray
    ref_kind: np.ndarray
    is_lead_phase: np.ndarray  # the person was a lead (not yet a customer) at the time


def _thin(rng: np.random.Generator, keep_p: np.ndarray) -> np.ndarray:
    return rng.random(keep_p.size) < keep_p


def simulate_events(rng: np.random.Generator, persons: Persons, orders: Orders, *, window: Window) -> Events:
    """All streams as thinned Poisson processes; sessions spawn page and product views."""
    horizon = float(window.days)
    churn = persons.churn
    active_end = np.minimum(churn, horizon)
    parts: list[
        tuple[np.ndarray, np.ndarray, int, np.ndarray, bool]
    ] = []  # person, seconds, type, channel, lead

    def add(
        person: np.ndarray, seconds: np.ndarray, kind: int, channel: np.ndarray, lead: bool = False
    ) -> None:
        parts.append((person, seconds, kind, np.broadcast_to(channel, person.shape), lead))

    # Customer visits fade before churn, then stop.
    who, days = clock.poisson_times(rng, rate=persons.visit_rate, begin=persons.active_start, end=active_end)
    keep = _thin(rng, 1 - 0.7 * clock.ramp(days, churn[who], width=CHURN_RAMP_DAYS))
    who, days = who[keep], days[keep]
    visit_channel = np.where(rng.random(who.size) < persons.app_share[who], APP, WEB)
    visit_seconds = window.at_local_hour(rng, days)
    add(who, visit_seconds, VISIT, visit_channel)
    # Leads browse (by email) from creation until they convert or lose interest.
    lead_end = np.fmin(np.fmin(persons.converted_at, persons.lead_created + 90), horizon)
    lwho, ldays = clock.poisson_times(
        rng, rate=persons.lead_visit_rate, begin=persons.lead_created, end=lead_end
    )
    lead_visit_seconds = window.at_local_hour(rng, ldays)
    add(lwho, lead_visit_seconds, VISIT, np.full(lwho.size, WEB), lead=True)

    for parent_who, parent_seconds, parent_channel, lead in (
        (who, visit_seconds, visit_channel, False),
        (lwho, lead_visit_seconds, np.full(lwho.size, WEB), True),
    ):
        for kind, per_visit in ((PAGE_VIEW, 1.3), (PRODUCT_VIEW, 0.7)):
            count = rng.poisson(per_visit, parent_who.size)
            idx = np.repeat(np.arange(parent_who.size), count)
            later = parent_seconds[idx] + rng.integers(10, 1200, idx.size)
            add(parent_who[idx], later, kind, parent_channel[idx], lead=lead)

    # Newsletters: opens fade before churn and go on faintly after it (the inbox still gets them).
    who, days = clock.poisson_times(
        rng,
        rate=persons.email_open_rate,
        begin=persons.active_start,
        end=np.where(persons.is_customer, horizon, np.nan),
    )
    r = clock.ramp(days, churn[who], width=CHURN_RAMP_DAYS)
    keep = _thin(rng, np.where(days >= churn[who], 0.15, 1 - 0.6 * r))
    who, days = who[keep], days[keep]
    lwho, ldays = clock.poisson_times(
        rng, rate=np.where(persons.has_lead, 0.04, 0.0), begin=persons.lead_created, end=lead_end
    )
    for open_who, open_days, lead in ((who, days, False), (lwho, ldays, True)):
        open_seconds = window.at_local_hour(rng, open_days)
        add(open_who, open_seconds, EMAIL_OPEN, np.full(open_who.size, EMAIL), lead=lead)
        clicked = rng.random(open_who.size) < 0.18
        add(
            open_who[clicked],
            open_seconds[clicked] + rng.integers(30, 7200, clicked.sum()),
            EMAIL_CLICK,
            np.full(clicked.sum(), EMAIL),
            lead=lead,
        )

    # Support tickets (x4 at churn) and complaints (x10 at churn), also shortly after a return.
    for kind, rate, peak in (
        (SUPPORT_TICKET, persons.support_rate, 4.0),
        (COMPLAINT, persons.complaint_rate, 10.0),
    ):
        who, days = clock.poisson_times(rng, rate=rate * peak, begin=persons.active_start, end=active_end)
        r = clock.ramp(days, churn[who], width=CHURN_RAMP_DAYS)
        keep = _thin(rng, (1 + (peak - 1) * r) / peak)
        add(who[keep], window.at_local_hour(rng, days[keep]), kind, np.full(keep.sum(), SUPPORT))
    returned = np.flatnonzero((orders.status == 1) & (rng.random(orders.status.size) < 0.12))
    after = orders.seconds[returned] + rng.integers(3600, 10 * clock.DAY_SECONDS, returned.size)
    in_window = after < window.start_epoch + window.days * clock.DAY_SECONDS
    add(orders.person[returned][in_window], after[in_window], COMPLAINT, np.full(in_window.sum(), SUPPORT))

    person = np.concatenate([p[0] for p in parts])
    seconds = np.concatenate([p[1] for p in parts])
    event_type = np.concatenate([np.full(p[0].size, p[2]) for p in parts])
    channel = np.concatenate([np.asarray(p[3]) for p in parts])
    lead_phase = np.concatenate([np.full(p[0].size, p[4]) for p in parts])

    # Logged-in web/app events carry the contact id, emails the address, support mostly the phone.
    u = rng.random(person.size)
    ref_kind = np.select(
        [
            np.isin(event_type, (VISIT, PAGE_VIEW, PRODUCT_VIEW)) & ~lead_phase,
            np.isin(event_type, (SUPPORT_TICKET, COMPLAINT)),
        ],
        [np.where(u < 0.55, BY_CONTACT, BY_EMAIL), np.where(u < 0.6, BY_PHONE, BY_EMAIL)],
        BY_EMAIL,
    )
    order = np.argsort(seconds, kind="stable")
    return Events(
        person[order], seconds[order], event_type[order], channel[order], ref_kind[order], lead_phase[order]
    )


def render_events(
    rng: np.random.Generator,
    events: Events,
    persons: Persons,
    contacts: Contacts,
    *,
    window: Window,
    rates: mess.MessRates,
    first_id: int = 0,
) -> tuple[pa.Table, pa.Array, np.ndarray]:
    """The events.csv.gz table (with re-sent duplicates), the distinct event ids and their true persons."""
    n = events.person.size
    p = events.person
    # A person with two CRM contacts is logged in under the second one about a third of the time.
    use_second = (contacts.second_of[p] >= 0) & (rng.random(n) < 0.33)
    contact_row = np.where(use_second, contacts.second_of[p], contacts.primary_of[p])
    # Without a CRM contact a "logged-in" event falls back to the email.
    kind = np.where((events.ref_kind == BY_CONTACT) & (contact_row < 0), BY_EMAIL, events.ref_kind)
    ref = mess.by_kind(
        kind,
        {
            BY_CONTACT: lambda rows: contacts.ids(contact_row[rows]),
            BY_EMAIL: lambda rows: mess.emails(rng, persons.ids.email.take(pa.array(p[rows])), rates=rates),
            BY_PHONE: lambda rows: mess.phones(rng, persons.ids.phone[p[rows]], style_p=SUPPORT_PHONE_STYLES),
        },
    )
    ref = pc.if_else(pa.array(mess.flags(rng, n, rates.missing_event_ref)), pa.scalar(None, pa.string()), ref)

    seconds = events.seconds.copy()
    future = mess.flags(rng, n, rates.future_event)
    end_epoch = window.start_epoch + window.days * clock.DAY_SECONDS
    seconds[future] = end_epoch + rng.integers(3600, 400 * clock.DAY_SECONDS, future.sum())
    table = pa.table(
        {
            "event_id": text.sequential_ids("E", n, 9, start=first_id),
            "user_ref": ref,
            "event_type": text.labels(vocab.EVENT_TYPES, events.event_type),
            "event_ts": clock.render(rng, seconds, mix=EVENT_TS_MIX),
            "channel": text.labels(
                vocab.CHANNELS, events.channel, valid=~mess.flags(rng, n, rates.missing_channel)
            ),
        }
    )
    rows = mess.resend_duplicates(rng, n, rate=rates.duplicate_events)
    return table.take(pa.array(rows)), table.column("event_id").combine_chunks(), p

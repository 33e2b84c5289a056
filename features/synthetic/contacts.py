"""The embedded CRM: table `contacts`, one row per CRM contact (some persons have two, imported twice)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic import clock, mess, text, vocab
from features.synthetic.clock import Window
from features.synthetic.persons import CITY_NAMES, Persons

SIGNUP_TS_MIX = clock.TsMix(offset=0.50, utc_z=0.20, naive=0.15, date_only=0.15)
UPDATED_TS_MIX = clock.TsMix(offset=0.50, utc_z=0.30, naive=0.20)
# Hand-typed CRM numbers come in every format.
CRM_PHONE_STYLES = (0.40, 0.25, 0.15, 0.12, 0.08)


@dataclass(frozen=True)
class Contacts:
    """CRM contacts in id order (row i is contact "C%07d" % (i + 1))."""

    person: np.ndarray
    is_second: np.ndarray
    created: np.ndarray  # days since window start (may be negative: before the window)
    primary_of: np.ndarray  # per person: row of the first contact, -1 if none
    second_of: np.ndarray  # per person: row of the second contact, -1 if none
    first_id: int = 0  # contacts of earlier chunks: row i is contact number first_id + i + 1

    def ids(self, rows: np.ndarray) -> pa.Array:
        """Contact id strings for contact rows."""
        number = np.asarray(rows, dtype=np.int64) + self.first_id + 1
        width = max(7, len(str(self.first_id + self.person.size)))  # one width per chunk
        return text.join([text.constant("C", number.size), text.digits(number, width)])


def simulate_contacts(
    rng: np.random.Generator, persons: Persons, *, window: Window, first_id: int = 0
) -> Contacts:
    """Customers get a contact at sign-up, a few a second one later; some prospects are in the CRM too."""
    horizon = float(window.days)
    first = np.flatnonzero(persons.n_contacts >= 1)
    second = np.flatnonzero(persons.n_contacts == 2)
    first_created = np.where(persons.is_customer, persons.signup, persons.lead_created)[first]
    base = np.maximum(persons.signup[second], -400.0)
    second_created = np.minimum(base + rng.uniform(20, 400, second.size), horizon - 1)
    person = np.concatenate([first, second])
    is_second = np.concatenate([np.zeros(first.size, bool), np.ones(second.size, bool)])
    created = np.concatenate([first_created, second_created])
    order = np.lexsort((is_second, person, created))  # ids follow creation time
    person, is_second, created = person[order], is_second[order], created[order]
    primary_of = np.full(persons.n, -1, dtype=np.int64)
    second_of = np.full(persons.n, -1, dtype=np.int64)
    rows = np.arange(person.size)
    primary_of[person[~is_second]] = rows[~is_second]
    second_of[person[is_second]] = rows[is_second]
    return Contacts(person, is_second, created, primary_of, second_of, first_id)


def render_contacts(
    rng: np.random.Generator, contacts: Contacts, persons: Persons, *, window: Window, rates: mess.MessRates
) -> pa.Table:
    """The `contacts` table as the CRM holds it."""
    n = contacts.person.size
    p = contacts.person
    take = pa.array(p)
    second = contacts.is_second

    name = persons.ids.full_name.take(take)
    name = text.join([text.upper(text.from_arrow(name), second & (rng.random(n) < 0.2))])
    address = pc.if_else(
        pa.array(second & persons.second_uses_alt_email[p]),
        persons.ids.alt_email.take(take),
        persons.ids.email.take(take),
    )
    email_missing = mess.flags(rng, n, rates.missing_contact_email)
    phone_missing = mess.flags(rng, n, rates.missing_contact_phone) & ~email_missing
    # A second import of the same person often differs only in the case of the email.
    second_case = mess.MessRates(email_case=min(0.6, 15 * rates.email_case), email_space=rates.email_space)
    email_plain = mess.emails(rng, address, rates=rates, valid=~email_missing)
    email_second = mess.emails(rng, address, rates=second_case, valid=~email_missing)
    email = pc.if_else(pa.array(second), email_second, email_plain)

    withdrawn = persons.consent_withdrawn[p]
    answer = np.where(rng.random(n) < 0.70, 1, 0)  # 1 = "Y", 0 = never asked (NULL)
    consent_code = np.where(withdrawn & (~second | (rng.random(n) < 0.5)), 2, answer)
    signup_seconds = window.to_epoch(contacts.created)
    updated_days = contacts.created + rng.random(n) * np.maximum(window.days - contacts.created, 0)
    updated_seconds = np.maximum(window.at_local_hour(rng, updated_days), signup_seconds)

    return pa.table(
        {
            "contact_id": contacts.ids(np.arange(n)),
            "full_name": name,
            "phone": mess.phones(rng, persons.ids.phone[p], style_p=CRM_PHONE_STYLES, valid=~phone_missing),
            "email": email,
            "region": text.labels(vocab.REGIONS, persons.region[p]),
            "city": text.labels(CITY_NAMES, persons.city[p], valid=~mess.flags(rng, n, rates.missing_city)),
            "signup_date": clock.render(rng, signup_seconds, mix=SIGNUP_TS_MIX),
            "acquisition_channel": text.labels(
                vocab.ACQUISITION_CHANNELS,
                persons.acquisition_channel[p],
                valid=~mess.flags(rng, n, rates.missing_acquisition),
            ),
            "customer_type": text.labels(vocab.CUSTOMER_TYPES, persons.customer_type[p]),
            "consent_profiling": text.labels(["", "Y", "N"], consent_code, valid=consent_code != 0),
            "last_updated": clock.render(rng, updated_seconds, mix=UPDATED_TS_MIX),
        }
    )

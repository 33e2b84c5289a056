"""`persona data generate`: draw the population, render every source, write them atomically.

Each stage gets its own child of `SeedSequence(seed)`, so one seed gives byte-identical files and a
change in one source's rendering does not reshuffle the others.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from configs.sections.generator import GeneratorConfig
from features.synthetic import contacts, events, leads, mess, orders, persons, text, vocab, writers
from features.synthetic.clock import Window

CRM_FILE = "crm.sqlite"
ORDERS_FILE = "orders.csv.gz"
EVENTS_FILE = "events.csv.gz"
LEADS_FILE = "leads.csv"
PERSON_MAP_FILE = "ground_truth/person_map.parquet"
PERSONS_FILE = "ground_truth/persons.parquet"
# Each customer's true preference over categories (one column per category, rows sum to 1).
CATEGORY_PREFERENCES_FILE = "ground_truth/category_preferences.parquet"
_STREAMS = (
    "persons",
    "contacts",
    "orders",
    "events",
    "render_contacts",
    "render_orders",
    "render_events",
    "render_leads",
)

Progress = Callable[[Iterable[Any]], Iterator[Any]]


@dataclass
class GenerationSummary:
    """What was written: rows per source (incl. re-sent duplicates), distinct persons, wall time."""

    out: Path
    rows: dict[str, int] = field(default_factory=dict)
    persons: int = 0
    customers: int = 0
    leads_converted: int = 0
    seconds: float = 0.0


def _rngs(seed: int, chunk: int = 0) -> dict[str, np.random.Generator]:
    # Chunk 0 keeps the original streams (a population of one chunk is byte-identical to the
    # unchunked generator); later chunks get their own, far from the stage children (0..7).
    root = (
        np.random.SeedSequence(seed)
        if chunk == 0
        else np.random.SeedSequence(seed, spawn_key=(1000 + chunk,))
    )
    children = root.spawn(len(_STREAMS))
    return {name: np.random.Generator(np.random.PCG64(s)) for name, s in zip(_STREAMS, children, strict=True)}


def chunk_bounds(n: int, chunk_persons: int) -> list[tuple[int, int]]:
    """(first person, persons) of each chunk of a population of `n`."""
    return [(first, min(chunk_persons, n - first)) for first in range(0, n, chunk_persons)]


def _utc_us(window: Window, days: np.ndarray, *, valid: np.ndarray) -> pa.Array:
    # Whole seconds, as the sources write them.
    seconds = window.start_epoch + np.floor(np.nan_to_num(days, posinf=0, neginf=0) * 86_400)
    micros = seconds * 1_000_000
    return pa.array(micros.astype(np.int64), pa.timestamp("us", tz="UTC"), mask=~valid)


def persons_table(people: persons.Persons, *, window: Window, first: int = 0) -> pa.Table:
    """Ground truth per person: archetype, key dates and the behaviour drivers behind the data."""
    horizon = float(window.days)
    churned = np.isfinite(people.churn) & (people.churn < horizon)
    month = 30.0
    has_lead = people.has_lead
    return pa.table(
        {
            "person_id": text.sequential_ids("T", people.n, 7, start=first),
            "archetype": text.labels(persons.ARCHETYPES, people.archetype),
            "is_customer": pa.array(people.is_customer),
            "signup_at": _utc_us(window, people.signup, valid=people.is_customer),
            "churn_at": _utc_us(window, people.churn, valid=churned),
            "lead_created_at": _utc_us(window, people.lead_created, valid=has_lead),
            "converted_at": _utc_us(window, people.converted_at, valid=np.isfinite(people.converted_at)),
            "consent_withdrawn": pa.array(people.consent_withdrawn),
            "n_contacts": pa.array(people.n_contacts, pa.int64()),
            "orders_per_30d": pa.array(people.order_rate * month),
            "median_order_amount": pa.array(np.where(people.is_customer, np.round(people.spend, 2), 0.0)),
            "discount_prob": pa.array(np.where(people.is_customer, people.discount_prob, 0.0)),
            "return_prob": pa.array(np.where(people.is_customer, people.return_base, 0.0)),
            "visits_per_30d": pa.array(people.visit_rate * month),
            "email_opens_per_30d": pa.array(people.email_open_rate * month),
            "support_tickets_per_30d": pa.array(people.support_rate * month),
            "complaints_per_30d": pa.array(people.complaint_rate * month),
            "lead_engagement": pa.array(people.lead_engagement, pa.int64(), mask=~has_lead),
            "lead_visits_per_30d": pa.array(people.lead_visit_rate * month, mask=~has_lead),
            "lead_conversion_p": pa.array(np.nan_to_num(people.lead_conversion_p), mask=~has_lead),
        }
    )


def person_map_table(parts: list[tuple[str, pa.Array, np.ndarray]], person_ids: pa.Array) -> pa.Table:
    """One row per distinct source record: (source, record_id, person_id).

    `source` and `person_id` are dictionary-encoded (a few values, millions of rows); they are written
    to parquet without the Arrow schema, so readers get plain strings.
    """
    source_names = pa.array([name for name, _, _ in parts])
    source_codes = np.concatenate(
        [np.full(len(ids), i, dtype=np.int32) for i, (_, ids, _) in enumerate(parts)]
    )
    person_codes = np.concatenate([who for _, _, who in parts]).astype(np.int32)
    return pa.table(
        {
            "source": pa.DictionaryArray.from_arrays(pa.array(source_codes), source_names),
            "record_id": pa.chunked_array([ids for _, ids, _ in parts]),
            "person_id": pa.DictionaryArray.from_arrays(pa.array(person_codes), person_ids),
        }
    )


def category_preferences_table(people: persons.Persons, person_ids: pa.Array) -> pa.Table:
    """Customers' true preference over categories: `person_id`, then one weight column per category."""
    rows = np.flatnonzero(people.is_customer)
    return pa.table(
        {
            "person_id": person_ids.take(pa.array(rows)),
            **{name: pa.array(people.category_weights[rows, i]) for i, name in enumerate(vocab.CATEGORIES)},
        }
    )


# Persons drawn, simulated and written at a time: peak memory follows this, not the population
# (about 2.8 GB at 100,000 persons; the output of a population up to this size is one chunk).
CHUNK_PERSONS = 100_000


@dataclass
class _Offsets:
    """Records written by earlier chunks: ids continue across chunks."""

    contacts: int = 0
    orders: int = 0
    events: int = 0
    leads: int = 0


def _make_chunk(
    config: GeneratorConfig,
    *,
    chunk: int,
    first: int,
    n: int,
    window: Window,
    rates: mess.MessRates,
    phone_offset: int | None,
    offsets: _Offsets,
) -> dict[str, Any]:
    """Draw, simulate and render persons first..first+n-1: every table of this chunk."""
    rng = _rngs(config.seed, chunk)
    people = persons.make_persons(rng["persons"], n=n, window=window, first=first, phone_offset=phone_offset)
    people_contacts = contacts.simulate_contacts(
        rng["contacts"], people, window=window, first_id=offsets.contacts
    )
    simulated_orders = orders.simulate_orders(rng["orders"], people, window=window)
    simulated_events = events.simulate_events(rng["events"], people, simulated_orders, window=window)
    part: dict[str, Any] = {"persons": people}
    part["contacts"] = contacts.render_contacts(
        rng["render_contacts"], people_contacts, people, window=window, rates=rates
    )
    part["orders"], orders_ids, orders_who = orders.render_orders(
        rng["render_orders"], simulated_orders, people, window=window, rates=rates, first_id=offsets.orders
    )
    del simulated_orders
    part["events"], events_ids, events_who = events.render_events(
        rng["render_events"],
        simulated_events,
        people,
        people_contacts,
        window=window,
        rates=rates,
        first_id=offsets.events,
    )
    del simulated_events
    part["leads"], leads_ids, leads_who = leads.render_leads(
        rng["render_leads"], people, window=window, rates=rates, first_id=offsets.leads
    )
    people_table = persons_table(people, window=window, first=first)
    person_ids = people_table.column("person_id").combine_chunks()
    map_parts = [
        ("contacts", part["contacts"].column("contact_id").combine_chunks(), people_contacts.person),
        ("orders", orders_ids, orders_who),
        ("events", events_ids, events_who),
        ("leads", leads_ids, leads_who),
    ]
    part[PERSONS_FILE] = people_table
    part[PERSON_MAP_FILE] = person_map_table(map_parts, person_ids)
    part[CATEGORY_PREFERENCES_FILE] = category_preferences_table(people, person_ids)
    offsets.contacts += people_contacts.person.size
    offsets.orders += len(orders_ids)
    offsets.events += len(events_ids)
    offsets.leads += len(leads_ids)
    return part


def generate(
    config: GeneratorConfig,
    *,
    out: Path,
    force: bool = False,
    progress: Progress | None = None,
    chunk_persons: int = CHUNK_PERSONS,
) -> GenerationSummary:
    """Generate every source for `config` into `out` (atomically: all files or none).

    Persons are drawn in chunks of `chunk_persons`; each chunk is simulated, rendered and appended
    to the files (gzip streams, SQLite, parquet row groups) before the next is drawn, so memory does
    not grow with the population. Ids continue across chunks; every record belongs to one person, so
    chunks are independent. `progress` wraps the list of chunks (e.g. `core.progress.track`).
    Raises PersonaError if `out` already holds data and `force` is False.
    """
    started = time.perf_counter()
    out = Path(out)
    writers.check_target(out, force=force)
    window = Window(config.start, config.end)
    rates = mess.MessRates().scaled(config.mess_scale)
    summary = GenerationSummary(out=out)
    summary.rows = dict.fromkeys(("contacts", "orders", "events", "leads"), 0)
    offsets = _Offsets()
    phone_offset: int | None = None
    chunks = chunk_bounds(config.customers, chunk_persons)
    tmp = writers.staging_dir(out)
    try:
        (tmp / "ground_truth").mkdir()
        with (
            writers.CsvStream(tmp / EVENTS_FILE, gzip_level=config.gzip_level) as events_out,
            writers.CsvStream(tmp / ORDERS_FILE, gzip_level=config.gzip_level) as orders_out,
            writers.CsvStream(tmp / LEADS_FILE) as leads_out,
            writers.SqliteStream(tmp / CRM_FILE, name="contacts", primary_key="contact_id") as crm_out,
            writers.ParquetStream(tmp / PERSONS_FILE) as persons_out,
            writers.ParquetStream(tmp / PERSON_MAP_FILE) as map_out,
            writers.ParquetStream(tmp / CATEGORY_PREFERENCES_FILE) as prefs_out,
            # The two big gzip streams compress on the other core (zlib releases the GIL) while this
            # thread writes the small sources and the ground truth.
            ThreadPoolExecutor(max_workers=2) as pool,
        ):
            for chunk, (first, n) in enumerate((progress or iter)(chunks)):
                part = _make_chunk(
                    config,
                    chunk=chunk,
                    first=first,
                    n=n,
                    window=window,
                    rates=rates,
                    phone_offset=phone_offset,
                    offsets=offsets,
                )
                people = part["persons"]
                phone_offset = people.ids.phone_offset
                big = [
                    pool.submit(events_out.write, part["events"]),
                    pool.submit(orders_out.write, part["orders"]),
                ]
                crm_out.write(part["contacts"])
                leads_out.write(part["leads"])
                persons_out.write(part[PERSONS_FILE])
                map_out.write(part[PERSON_MAP_FILE])
                prefs_out.write(part[CATEGORY_PREFERENCES_FILE])
                for job in big:
                    job.result()
                for source in summary.rows:
                    summary.rows[source] += part[source].num_rows
                summary.persons += people.n
                summary.customers += int(people.is_customer.sum())
                summary.leads_converted += int(np.isfinite(people.converted_at).sum())
                del part, people
        writers.check_target(out, force=force)  # someone may have written there meanwhile
        writers.publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary

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


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.Generator(np.random.PCG64(s)) for name, s in zip(_STREAMS, children, strict=True)}


def _utc_us(window: Window, days: np.ndarray, *, valid: np.ndarray) -> pa.Array:
    # Whole seconds, as the sources write them.
    seconds = window.start_epoch + np.floor(np.nan_to_num(days, posinf=0, neginf=0) * 86_400)
    micros = seconds * 1_000_000
    return pa.array(micros.astype(np.int64), pa.timestamp("us", tz="UTC"), mask=~valid)


def persons_table(people: persons.Persons, *, window: Window) -> pa.Table:
    """Ground truth per person: archetype, key dates and the behaviour drivers behind the data."""
    horizon = float(window.days)
    churned = np.isfinite(people.churn) & (people.churn < horizon)
    month = 30.0
    has_lead = people.has_lead
    return pa.table(
        {
            "person_id": text.sequential_ids("T", people.n, 7),
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


def _write_ground_truth(state: dict[str, Any], tmp: Path, *, window: Window) -> None:
    people_table = persons_table(state["persons"], window=window)
    parts = [
        ("contacts", state["contacts_table"].column("contact_id").combine_chunks(), state["contacts"].person),
        ("orders", state["orders_ids"], state["orders_who"]),
        ("events", state["events_ids"], state["events_who"]),
        ("leads", state["leads_ids"], state["leads_who"]),
    ]
    person_ids = people_table.column("person_id").combine_chunks()
    writers.write_parquet(person_map_table(parts, person_ids), tmp / PERSON_MAP_FILE)
    writers.write_parquet(people_table, tmp / PERSONS_FILE)
    writers.write_parquet(
        category_preferences_table(state["persons"], person_ids), tmp / CATEGORY_PREFERENCES_FILE
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


def generate(
    config: GeneratorConfig, *, out: Path, force: bool = False, progress: Progress | None = None
) -> GenerationSummary:
    """Generate every source for `config` into `out` (atomically: all files or none).

    `progress` wraps the list of stages (e.g. `core.progress.track`). Raises PersonaError if `out`
    already holds data and `force` is False.
    """
    started = time.perf_counter()
    out = Path(out)
    writers.check_target(out, force=force)
    window = Window(config.start, config.end)
    rates = mess.MessRates().scaled(config.mess_scale)
    rng = _rngs(config.seed)
    summary = GenerationSummary(out=out)
    state: dict[str, Any] = {}

    def draw_persons() -> None:
        state["persons"] = persons.make_persons(rng["persons"], n=config.customers, window=window)

    def draw_activity() -> None:
        people = state["persons"]
        state["contacts"] = contacts.simulate_contacts(rng["contacts"], people, window=window)
        state["orders"] = orders.simulate_orders(rng["orders"], people, window=window)
        state["events"] = events.simulate_events(rng["events"], people, state["orders"], window=window)

    def render_sources() -> None:
        people = state["persons"]
        state["contacts_table"] = contacts.render_contacts(
            rng["render_contacts"], state["contacts"], people, window=window, rates=rates
        )
        state["orders_table"], state["orders_ids"], state["orders_who"] = orders.render_orders(
            rng["render_orders"], state.pop("orders"), people, window=window, rates=rates
        )
        state["events_table"], state["events_ids"], state["events_who"] = events.render_events(
            rng["render_events"], state.pop("events"), people, state["contacts"], window=window, rates=rates
        )
        state["leads_table"], state["leads_ids"], state["leads_who"] = leads.render_leads(
            rng["render_leads"], people, window=window, rates=rates
        )

    def write_all() -> None:
        tmp = writers.staging_dir(out)
        try:
            (tmp / "ground_truth").mkdir()
            # The two big gzip streams compress on the other core (zlib releases the GIL) while this
            # thread writes the small sources and the ground truth.
            with ThreadPoolExecutor(max_workers=2) as pool:
                big = [
                    pool.submit(
                        writers.write_csv,
                        state["events_table"],
                        tmp / EVENTS_FILE,
                        gzip_level=config.gzip_level,
                    ),
                    pool.submit(
                        writers.write_csv,
                        state["orders_table"],
                        tmp / ORDERS_FILE,
                        gzip_level=config.gzip_level,
                    ),
                ]
                writers.write_sqlite(
                    state["contacts_table"], tmp / CRM_FILE, name="contacts", primary_key="contact_id"
                )
                writers.write_csv(state["leads_table"], tmp / LEADS_FILE)
                _write_ground_truth(state, tmp, window=window)
                for job in big:
                    job.result()
            writers.check_target(out, force=force)  # someone may have written there meanwhile
            writers.publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    stages: list[Callable[[], None]] = [draw_persons, draw_activity, render_sources, write_all]
    for stage in (progress or iter)(stages):
        stage()

    people = state["persons"]
    summary.rows = {
        "contacts": state["contacts_table"].num_rows,
        "orders": state["orders_table"].num_rows,
        "events": state["events_table"].num_rows,
        "leads": state["leads_table"].num_rows,
    }
    summary.persons = people.n
    summary.customers = int(people.is_customer.sum())
    summary.leads_converted = int(np.isfinite(people.converted_at).sum())
    summary.seconds = time.perf_counter() - started
    return summary

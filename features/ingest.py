"""`persona ingest`: raw sources -> validated, identity-resolved clean tables without raw PII.

Per source: read (column mapping from config) -> remove exact duplicate rows (counted) -> type and
validate (failures to the quarantine, with the reason) -> resolve identities across sources -> build the
clean tables of docs/CONTRACTS.md -> write them atomically to `clean/` with `ingest_report.json`.

Only orders are required; contacts, events and leads are optional and reported `absent` when not
configured (`sources.<name>: null`). `run_ingest` does the I/O; `ingest_frames` is the pure core.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from configs.sections.identity import IdentityConfig
from configs.sections.sources import SourceConfig, SourcesConfig
from configs.settings import Settings
from core.errors import SourceError, ValidationFailed
from features.chunked import ROW, Spool, SpooledTable, StagedSource, stage, write_parts
from features.clock import as_utc, check_as_of, derive_as_of
from features.engine import Engine, open_engine
from features.identity import KEY_KINDS, RULES, resolve
from features.normalize import TS_DTYPE, looks_like_email, normalize_emails, normalize_phones
from features.pit import micro_units, money
from features.quarantine import Quarantine
from features.readers import RawTable, read_source
from features.salt_guard import require_private_salt
from features.schemas import Statuses, schema_for, type_columns, validate

SOURCES = ("contacts", "leads", "orders", "events")  # identity priority: a person's anchor comes first
# Typed and validated chunk by chunk (`features.chunked`): the largest sources (about 57 events and 19
# orders per person).
CHUNKED_SOURCES = ("events", "orders")
OPTIONAL_SOURCES = ("contacts", "events", "leads")
CLEAN_TABLES = ("customers", "identity_map", "orders", "order_lines", "events", "leads", "quarantine")
REPORT_FILE = "ingest_report.json"

CUSTOMER_COLUMNS = [
    "customer_id",
    "consent_profiling",
    "signup_ts",
    "region",
    "city",
    "acquisition_channel",
    "customer_type",
    "is_customer",
    "sources",
    "first_seen_ts",
]
ORDER_COLUMNS = [
    "order_id",
    "customer_id",
    "order_ts",
    "amount",
    "discount",
    "quantity",
    "category",
    "is_returned",
    "is_cancelled",
]
EVENT_COLUMNS = ["customer_id", "event_ts", "event_type", "channel"]
# The clean orders' and events' dtypes (their Parquet schemas are these frames').
EMPTY_ORDERS = pd.DataFrame(
    {
        "order_id": pd.array([], dtype="string[pyarrow]"),
        "customer_id": pd.Categorical([]),
        "order_ts": pd.Series([], dtype=TS_DTYPE),
        "amount": pd.Series([], dtype="float64"),
        "discount": pd.Series([], dtype="float64"),
        "quantity": pd.Series([], dtype="int64"),
        "category": pd.array([], dtype="string[pyarrow]"),
        "is_returned": pd.Series([], dtype=bool),
        "is_cancelled": pd.Series([], dtype=bool),
    }
)
EMPTY_EVENTS = pd.DataFrame(
    {
        "customer_id": pd.Categorical([]),
        "event_ts": pd.Series([], dtype=TS_DTYPE),
        "event_type": pd.array([], dtype="string[pyarrow]"),
        "channel": pd.array([], dtype="string[pyarrow]"),
    }
)
LEAD_COLUMNS = [
    "lead_id",
    "customer_id",
    "created_ts",
    "source",
    "campaign",
    "engagement_score",
    "converted_ts",
]
IDENTITY_COLUMNS = ["source", "source_record_id", "source_key", "customer_id", "match_rule"]


@dataclass
class SourceReport:
    """What happened to one source in a run (rows are data rows of the source)."""

    status: str  # ok | absent
    location: str = ""
    read: int = 0
    kept: int = 0
    quarantined: int = 0
    duplicates_removed: int = 0
    missing_optional_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class IngestResult:
    """Clean tables (None for an absent optional source) and the run's report."""

    # orders, events and the identity map are written to Parquet by DuckDB (`SpooledTable`): `frame`
    tables: dict[str, pd.DataFrame | SpooledTable | None]
    sources: dict[str, SourceReport]
    as_of: pd.Timestamp
    match_rules: dict[str, int]
    as_of_given: bool = True  # False: derived from the sources' latest activity
    future_tolerance_hours: float = 0.0
    # holds the spooled tables' files; removed when the result is let go
    workdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def frame(self, name: str) -> pd.DataFrame | None:
        """A clean table in memory (a spooled one read back: mind its size)."""
        table = self.tables[name]
        return table.to_pandas() if isinstance(table, SpooledTable) else table

    def report(self) -> dict:
        """The JSON-able report written to `clean/ingest_report.json`."""
        customers = self.tables["customers"]
        assert customers is not None
        return {
            # the data's clock: later stages read it instead of the wall clock
            "as_of": self.as_of.isoformat(),
            "as_of_from": "given" if self.as_of_given else "latest activity in the sources",
            "future_tolerance_hours": self.future_tolerance_hours,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),  # when ingest ran (bookkeeping)
            "sources": {name: asdict(rep) for name, rep in self.sources.items()},
            "absent": [name for name, rep in self.sources.items() if rep.status == "absent"],
            "customers": len(customers),
            "withdrawn": int((~customers["consent_profiling"]).sum()),
            "match_rules": self.match_rules,
            "tables": {name: (None if t is None else len(t)) for name, t in self.tables.items()},
        }


# ---------------------------------------------------------------------------------------------- helpers
def _statuses(cfg: SourceConfig) -> Statuses:
    def norm(values: Iterable[str]) -> tuple[str, ...]:
        return tuple(v.strip().lower() for v in values)

    return Statuses(norm(cfg.completed_statuses), norm(cfg.returned_statuses), norm(cfg.cancelled_statuses))


def _kind_key(source: str, cfg: SourceConfig) -> str:
    return "order_lines" if source == "orders" and cfg.layout == "order_lines" else source


def _type_source(
    raw_table: RawTable, *, cfg: SourceConfig, quarantine: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame, SourceReport]:
    """Deduplicate and type one source. Returns (typed rows, raw rows, report); both frames are indexed
    by the 0-based position of the row in the source."""
    source, raw = raw_table.source, raw_table.frame
    report = SourceReport(
        status="ok",
        location=raw_table.location,
        read=len(raw),
        missing_optional_columns=raw_table.missing_optional,
    )
    duplicated = raw.duplicated(keep="first")
    report.duplicates_removed = int(duplicated.sum())
    if report.duplicates_removed:  # no copy of a source without duplicates
        raw = raw[~duplicated.to_numpy()]
    typed = type_columns(
        _kind_key(source, cfg),
        raw,
        timezone=cfg.timezone,
        date_format=cfg.date_format,
        quarantine=quarantine,
        source=source,
        location=raw_table.location,
    )
    return typed, raw, report


def _validate_source(
    source: str,
    typed: pd.DataFrame,
    raw: pd.DataFrame,
    *,
    cfg: SourceConfig,
    latest: pd.Timestamp,
    quarantine: Quarantine,
) -> pd.DataFrame:
    """Validate typed rows (timestamps after `latest` are future-dated); returns the rows that passed."""
    validate(typed, _schema(source, cfg, latest), raw=raw, quarantine=quarantine, source=source)
    return typed.drop(index=quarantine.rows(source), errors="ignore")


def _schema(source: str, cfg: SourceConfig, latest: pd.Timestamp):  # type: ignore[no-untyped-def]
    return schema_for(
        _kind_key(source, cfg),
        as_of=latest,
        statuses=_statuses(cfg) if source == "orders" else None,
        max_amount=cfg.max_amount,
        max_quantity=cfg.max_quantity,
    )


def _stage_source(
    raw_table: RawTable,
    *,
    cfg: SourceConfig,
    quarantine: Quarantine,
    folder: Path,
    step: Callable[[str], None] | None = None,
) -> tuple[StagedSource, SourceReport]:
    """`_type_source` of a source typed chunk by chunk and staged in `folder` (`features.chunked`)."""
    staged = stage(
        raw_table,
        kind_key=_kind_key(raw_table.source, cfg),
        folder=folder,
        timezone=cfg.timezone,
        date_format=cfg.date_format,
        quarantine=quarantine,
        step=step,
    )
    report = SourceReport(
        status="ok",
        location=raw_table.location,
        read=staged.rows,
        duplicates_removed=len(staged.duplicates),
        missing_optional_columns=raw_table.missing_optional,
    )
    return staged, report


def _validated_chunks(
    staged: StagedSource, *, cfg: SourceConfig, latest: pd.Timestamp, quarantine: Quarantine
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """`_validate_source` of a staged source: (rows that passed, raw text of the chunk) chunk by chunk."""
    schema = _schema(staged.source, cfg, latest)
    for column in [n for n, c in schema.columns.items() if c.unique and n in staged.columns]:
        rows, values = staged.repeated(column)
        quarantine.add(staged.source, pd.Index(rows), column=column, rule="duplicate_id", values=values)
        staged.rejected = np.union1d(staged.rejected, rows)
    yield from staged.validated_chunks(schema, quarantine=quarantine)


# The timestamps that say when the business was active: they set the data's end (`as_of`). Contacts'
# signup and update dates are CRM bookkeeping (an export may be newer than the orders) and do not.
ACTIVITY_TIMESTAMPS = {
    "orders": ("order_ts",),
    "events": ("event_ts",),
    "leads": ("created_at", "converted_at"),
}
# The raw columns whose values later rejections quote (by identity key, by order): the only ones
# kept after validation (the raw text of every column is a second copy of the source).
RAW_QUOTED = {
    "contacts": (),
    "leads": ("email", "phone"),
    "orders": ("order_id", "customer_ref", "quantity", "discount"),
    "events": ("user_ref",),
}
# A source whose every row is after `as_of` means a wrong `as_of`, not bad rows.
REQUIRED_TIMESTAMPS = {"orders": "order_ts", "events": "event_ts", "leads": "created_at"}


def _route_refs(
    refs: pd.Series,
    *,
    customer_key: str,
    contact_ids: pd.Index,
    default_region: str,
    phone_cache: dict,
) -> pd.DataFrame:
    """Identity keys of an order/event reference: a ready customer id, a known CRM contact id, an email
    (it has an '@') or a phone. Computed once per distinct reference of `refs` (a chunk); a phone is
    parsed once per run (`phone_cache`). Nothing is kept from chunk to chunk but that cache: a table of
    every reference seen, looked up and grown per chunk, made the routing quadratic in the chunks."""
    if customer_key == "customer_id":
        return pd.DataFrame({"contact_id": refs, "email": pd.NA, "phone": pd.NA}, index=refs.index).astype(
            "string[pyarrow]"
        )
    codes, uniques = pd.factorize(refs, use_na_sentinel=True)
    distinct = pd.Series(uniques, dtype="string[pyarrow]")
    # in Arrow: pandas' `isin` on Arrow text walks the contact ids in Python on every call (per chunk)
    is_contact = (
        pc.is_in(
            pa.array(distinct.array, type=pa.large_string()),
            value_set=pa.array(contact_ids.array, type=pa.large_string()),
        )
        .to_numpy(zero_copy_only=False)
        .astype(bool)
    )
    is_email = looks_like_email(distinct).to_numpy() & ~is_contact
    keys = pd.DataFrame(
        {
            "contact_id": distinct.where(is_contact),
            "email": normalize_emails(distinct.where(is_email)),
            "phone": normalize_phones(
                distinct.where(~is_contact & ~is_email), default_region=default_region, cache=phone_cache
            ),
        }
    ).astype("string[pyarrow]")
    no_key = pd.DataFrame({k: pd.array([pd.NA], dtype="string[pyarrow]") for k in keys.columns})
    keys = pd.concat([keys, no_key], ignore_index=True)
    picked = keys.take(np.where(codes >= 0, codes, len(keys) - 1))  # the last row: no key at all
    picked.index = refs.index
    return picked


def _spool_rows(
    frame: pd.DataFrame, *, rows: np.ndarray, record_id: pd.Series, stamp: pd.Series, clean: dict
) -> pd.DataFrame:
    """Kept rows of a large source as spooled: position (`_row`), record id (`_rid`), the one identity
    key each names (`_kind`, `_key`: orders and events route one reference), the timestamp that dates
    the person's first appearance (`_ts`), and the clean table's columns but `customer_id`."""
    held = np.column_stack([frame[k].notna().to_numpy(dtype=bool) for k in KEY_KINDS])
    # in Arrow: pandas' `fillna` with another text column converts every value to a Python object
    key = pc.coalesce(*(_text_arrow(frame[k].astype("string[pyarrow]")) for k in KEY_KINDS))
    return pd.DataFrame(
        {
            ROW: rows,
            "_rid": _text(record_id),
            "_kind": held.argmax(axis=1).astype("int8"),
            "_key": pd.arrays.ArrowStringArray(key.cast(pa.large_string())),
            "_ts": _ts(stamp).array,
            **clean,
        }
    )


def _event_rows(events: pd.DataFrame) -> pd.DataFrame:
    """A chunk of kept events as spooled; an event without an id is named by its row in the source."""
    rows = events.index.to_numpy(dtype="int64")
    ids = (
        events["event_id"].astype("string[pyarrow]")
        if "event_id" in events
        else pd.Series(pd.NA, index=events.index, dtype="string[pyarrow]")
    )
    missing = ids.isna().to_numpy()
    if missing.any():  # text only for the rows that need it
        ids = ids.copy()
        ids.iloc[np.flatnonzero(missing)] = pd.array((rows[missing] + 1).astype(str), dtype="string[pyarrow]")
    channel = events["channel"] if "channel" in events else pd.Series(pd.NA, index=events.index)
    return _spool_rows(
        events,
        rows=rows,
        record_id=ids,
        stamp=events["event_ts"],
        clean={
            "event_ts": _ts(events["event_ts"]).array,
            "event_type": _text(events["event_type"]),
            "channel": _text(channel),
        },
    )


def _order_rows(orders: pd.DataFrame, *, rows: np.ndarray, statuses: Statuses, lines: bool) -> pd.DataFrame:
    """Kept orders as spooled: a chunk of a one-row-per-order source, or the orders aggregated from
    order lines (`lines`). An order without an id is named by its row (`row-<n>`)."""
    o = orders
    if lines:
        amount, discount = o["gross"] - o["discount"], o["discount"]
        quantity, category = o["quantity"], o["category"]
        returned, cancelled = o["is_returned"], o["is_cancelled"]
    else:
        status = o["status"] if "status" in o else pd.Series(pd.NA, index=o.index, dtype="string")
        discount = o["discount"].fillna(0.0) if "discount" in o else pd.Series(0.0, index=o.index)
        amount = o["amount"] - discount
        quantity = o["quantity"] if "quantity" in o else pd.Series(1.0, index=o.index)
        category = o["category"] if "category" in o else pd.Series(pd.NA, index=o.index, dtype="string")
        returned = status.isin(statuses.returned).fillna(False)
        cancelled = status.isin(statuses.cancelled).fillna(False)
    order_id = (
        o["order_id"]
        if "order_id" in o
        else pd.Series(pd.array("row-" + (o.index + 1).astype(str), dtype="string[pyarrow]"), index=o.index)
    )
    return _spool_rows(
        o,
        rows=rows,
        record_id=order_id,
        stamp=o["order_ts"],
        clean={
            "order_id": _text(order_id),
            "order_ts": _ts(o["order_ts"]).array,
            "amount": amount.to_numpy(dtype="float64"),
            "discount": discount.to_numpy(dtype="float64"),
            "quantity": quantity.to_numpy(dtype="int64"),
            "category": _text(category),
            "is_returned": returned.to_numpy(dtype=bool),
            "is_cancelled": cancelled.to_numpy(dtype=bool),
        },
    )


def _spooled_keys(spool: Spool) -> pd.DataFrame:
    """The spooled rows' distinct keys, in order of first use: the key columns, `_kind`, `_key`,
    `first_row` (position of the first row naming it), `uses` (rows naming it), `first_ts`."""
    if spool.rows:
        table = spool.query(
            f"SELECT _kind, _key, min({ROW}) AS first_row, count(*) AS uses, min(_ts) AS first_ts "
            "FROM {spool} GROUP BY _kind, _key ORDER BY first_row"
        )
    else:
        table = pa.table(
            {
                "_kind": pa.array([], pa.int8()),
                "_key": pa.array([], pa.string()),
                "first_row": pa.array([], pa.int64()),
                "uses": pa.array([], pa.int64()),
                "first_ts": pa.array([], pa.timestamp("us", tz="UTC")),
            }
        )
    keys = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    kind = keys["_kind"].to_numpy()
    for j, name in enumerate(KEY_KINDS):
        keys[name] = keys["_key"].where(kind == j).astype("string[pyarrow]")
    keys["first_ts"] = keys["first_ts"].astype(TS_DTYPE)
    return keys


def _text_arrow(values: pd.Series | pd.api.extensions.ExtensionArray) -> pa.Array:
    array = pa.array(values.array if isinstance(values, pd.Series) else values)
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array.cast(pa.string())


def _per_key(keys: pd.DataFrame, resolved: pd.DataFrame) -> tuple[pa.Table, pd.Series]:
    """The person, business key and rules of each distinct key of a spooled source (`resolved`: its
    rows of the resolved identity map), and the rules of the rows repeating a key, counted. The first
    row naming a key takes its key row's rule; the others repeat a key, so their rule is the key's kind
    (`resolve_records`)."""
    kind_rule = np.array([RULES[k] for k in KEY_KINDS], dtype=object)[keys["_kind"].to_numpy()]
    table = pa.table(
        {
            "_kind": pa.array(keys["_kind"].to_numpy(dtype="int8")),
            "_key": _text_arrow(keys["_key"]),
            "first_row": pa.array(keys["first_row"].to_numpy(dtype="int64")),
            "customer_id": _text_arrow(resolved["customer_id"]),
            "source_key": _text_arrow(resolved["source_key"]),
            "first_rule": _text_arrow(resolved["match_rule"]),
            "kind_rule": pa.array(kind_rule, pa.string()),
        }
    )
    copies = pd.Series(keys["uses"].to_numpy(dtype="int64") - 1).groupby(kind_rule).sum()
    return table, copies


_JOINED = "FROM {spool} s JOIN per_key k ON s._kind = k._kind AND s._key = k._key"


def _spooled_table(
    spool: Spool, per_key: pa.Table, *, columns: list[str], order: list[str], empty: pd.DataFrame, path: Path
) -> SpooledTable:
    """A clean table (`columns`, sorted by `order` then source position) written by DuckDB from the
    spool joined with each key's person."""
    select = ", ".join("k.customer_id" if c == "customer_id" else f"s.{c}" for c in columns)
    by = ", ".join(f"s.{c}" for c in [*order, ROW])
    return spool.write(
        f"SELECT {select} {_JOINED} ORDER BY {by}",
        path=path,
        schema=_parquet_table(empty).schema,
        per_key=per_key,
    )


def _identity_rows(source: str) -> str:
    """The identity map rows of a spooled source, in source order (see `_per_key`)."""
    return (
        f"SELECT '{source}' AS source, s._rid AS source_record_id, k.source_key, k.customer_id, "
        f"CASE WHEN s.{ROW} = k.first_row THEN k.first_rule ELSE k.kind_rule END AS match_rule "
        f"{_JOINED} ORDER BY s.{ROW}"
    )


def _has_key(keys: pd.DataFrame) -> pd.Series:
    return keys.notna().any(axis=1)


def _reject(
    quarantine: Quarantine,
    source: str,
    frame: pd.DataFrame,
    mask: pd.Series,
    *,
    column: str,
    rule: str,
    raw: pd.DataFrame,
) -> pd.DataFrame:
    """Quarantine the rows of `frame` where `mask` holds; return the others."""
    rows = frame.index[mask.to_numpy()]
    if not len(rows):
        return frame  # no copy when nothing is rejected
    quarantine.add(
        source,
        rows,
        column=column,
        rule=rule,
        values=raw[column].loc[rows] if column in raw else pd.Series(index=rows, dtype=object),
    )
    return frame[~mask.to_numpy()]


def return_lines(lines: pd.DataFrame, *, return_prefixes: tuple[str, ...] = ()) -> np.ndarray:
    """Lines that document goods coming back rather than a sale: a negative quantity, or an order id
    starting with one of `return_prefixes` (e.g. a credit note "C536379")."""
    back = (lines["quantity"] < 0).to_numpy()
    if return_prefixes:
        ids = lines["order_id"].astype("string")
        back |= ids.str.startswith(tuple(return_prefixes)).fillna(False).to_numpy(bool)
    return back


def aggregate_order_lines(
    lines: pd.DataFrame,
    *,
    statuses: Statuses,
    return_prefixes: tuple[str, ...] = (),
    engine: Engine | None = None,
) -> pd.DataFrame:
    """Order lines -> one row per `order_id` (pure; computed by `engine`, an embedded DuckDB without).

    `lines` has `order_id`, `order_ts`, `quantity`, `unit_price` and optionally `discount`, `category`,
    `status`. Purchase lines (quantity > 0, not a return document: see `return_lines`) give the order's
    gross value sum(quantity * unit_price), `discount` and `quantity`; `category` is the one with the
    largest value (ties: first seen); `is_returned` = any return line or a line with a returned status;
    `is_cancelled` = every purchase line has a cancelled status. Returns `order_id`, `order_ts`
    (earliest line), `gross`, `discount`, `quantity`, `category`, `is_returned`, `is_cancelled`,
    `purchase_lines`, in first-seen order. An order without purchase lines is a return document, to be
    linked to the purchase it returns (`link_returns`). Money is summed in exact micro-units
    (`features.pit`), so every engine gives the same value whatever order it adds in.
    """
    if engine is None:
        with open_engine() as own:
            return aggregate_order_lines(
                lines, statuses=statuses, return_prefixes=return_prefixes, engine=own
            )
    status = lines["status"] if "status" in lines else pd.Series(pd.NA, index=lines.index, dtype="string")
    back = return_lines(lines, return_prefixes=return_prefixes)
    category = lines["category"] if "category" in lines else pd.Series(pd.NA, index=lines.index)
    discount = lines["discount"] if "discount" in lines else pd.Series(0.0, index=lines.index)
    work = engine.table(
        pd.DataFrame(
            {
                "_row": np.arange(len(lines), dtype="int64"),  # first-seen order, kept through the engine
                "order_id": lines["order_id"].astype("string").to_numpy(),
                "order_ts": lines["order_ts"].to_numpy(),
                "quantity": lines["quantity"].astype("float64").to_numpy(),
                "unit_price": lines["unit_price"].astype("float64").to_numpy(),
                "discount": pd.to_numeric(discount).astype("float64").to_numpy(),
                "category": category.astype("string").to_numpy(),
                "back": back,
                "returned_status": status.isin(statuses.returned).fillna(False).to_numpy(bool),
                "cancelled_status": status.isin(statuses.cancelled).fillna(False).to_numpy(bool),
            }
        )
    )
    orders = engine.execute(order_line_totals(work)).sort_values("_row", kind="stable")
    orders = orders.drop(columns="_row").reset_index(drop=True)
    orders["order_ts"] = pd.to_datetime(orders["order_ts"], utc=True).astype(lines["order_ts"].dtype)
    orders["category"] = orders["category"].astype(object).where(orders["category"].notna(), pd.NA)
    for column in ("quantity", "purchase_lines"):
        orders[column] = orders[column].astype("int64")
    orders["is_returned"] = orders["is_returned"].astype(bool)
    orders["is_cancelled"] = orders["is_cancelled"].astype(bool)
    return orders


def order_line_totals(lines: ibis.Table) -> ibis.Table:
    """The Ibis definition behind `aggregate_order_lines` (any engine): `lines` has `_row` (first-seen
    position), `order_id`, `order_ts`, `quantity`, `unit_price`, `discount`, `category`, and the flags
    `back` (a return line), `returned_status`, `cancelled_status`."""
    purchase = (lines.quantity > 0) & ~lines.back
    line = lines.mutate(
        gross_u=ibis.ifelse(purchase, micro_units(lines.quantity * lines.unit_price), 0),
        discount_u=ibis.ifelse(purchase, micro_units(lines.discount), 0),
        qty=ibis.ifelse(purchase, lines.quantity, 0.0),
        purchase=ibis.ifelse(purchase, 1, 0),
        cancelled=ibis.ifelse(purchase & lines.cancelled_status, 1, 0),
        returned=ibis.ifelse(lines.back | lines.returned_status, 1, 0),
    )
    totals = line.group_by("order_id").aggregate(
        _row=line._row.min(),
        order_ts=line.order_ts.min(),
        gross_u=line.gross_u.sum(),
        discount_u=line.discount_u.sum(),
        quantity=line.qty.sum(),
        purchase_lines=line.purchase.sum(),
        cancelled_lines=line.cancelled.sum(),
        returned=line.returned.max(),
    )
    # the category with the largest value; ties: the one seen first in the order's lines
    by_category = (
        line.filter(line.category.notnull())
        .group_by(["order_id", "category"])
        .aggregate(value=line.gross_u.sum(), seen=line._row.min())
    )
    rank = ibis.row_number().over(
        group_by=by_category.order_id, order_by=[ibis.desc(by_category.value), by_category.seen]
    )
    top = by_category.mutate(_rank=rank)
    top = top.filter(top._rank == 0).select(cat_order="order_id", category="category")
    joined = totals.left_join(top, totals.order_id == top.cat_order)
    return joined.select(
        "_row",
        "order_id",
        "order_ts",
        gross=money(joined.gross_u),
        discount=money(joined.discount_u),
        quantity=joined.quantity.round().cast("int64"),
        purchase_lines=joined.purchase_lines.cast("int64"),
        is_returned=joined.returned == 1,
        is_cancelled=(joined.purchase_lines > 0) & (joined.cancelled_lines == joined.purchase_lines),
        category=joined.category,
    )


def _customer_key(frame: pd.DataFrame) -> pd.Series:
    """One text per customer reference (its normalised contact id, email or phone) to link a return to
    the purchases of the same reference before identities are resolved."""
    parts = [frame[k].astype("string").fillna("") for k in ("contact_id", "email", "phone")]
    return parts[0] + "\x1f" + parts[1] + "\x1f" + parts[2]


def link_returns(lines: pd.DataFrame, orders: pd.DataFrame) -> pd.Series:
    """For each return document (an order without purchase lines) the purchase order it returns, or <NA>
    when the same customer reference bought nothing before it (pure).

    `lines`: the typed order lines with `order_id`, `order_ts`, identity keys, optional `product_id`;
    `orders`: `aggregate_order_lines`' output. The purchase is the latest earlier (or same-time) order
    (not cancelled) of the same customer holding the same product, else the customer's latest earlier
    such order.
    Returns a Series indexed by the return documents' order ids.
    """
    returns = orders.loc[orders["purchase_lines"] == 0, ["order_id", "order_ts"]]
    if returns.empty:
        return pd.Series(pd.NA, index=pd.Index([], name="order_id"), dtype="string")
    keyed = lines[["order_id"]].assign(
        key=_customer_key(lines).to_numpy(),
        product=(
            lines["product_id"].astype("string")
            if "product_id" in lines
            else pd.Series("", index=lines.index)
        )
        .fillna("")
        .to_numpy(),
    )
    is_return = keyed["order_id"].isin(returns["order_id"]).to_numpy()
    # a cancelled order was never a purchase: nothing of it can come back
    bought = orders.loc[(orders["purchase_lines"] > 0) & ~orders["is_cancelled"], ["order_id", "order_ts"]]
    order_ts = pd.concat([bought, returns]).set_index("order_id")["order_ts"]
    keyed["ts"] = order_ts.reindex(keyed["order_id"]).to_numpy()
    purchase_lines = keyed[~is_return & keyed["order_id"].isin(bought["order_id"]).to_numpy()]
    purchase_lines = purchase_lines.rename(columns={"order_id": "purchase"}).sort_values("ts", kind="stable")
    return_rows = keyed[is_return].sort_values("ts", kind="stable")
    by_product = pd.merge_asof(
        return_rows, purchase_lines, on="ts", by=["key", "product"], direction="backward"
    )
    first_by_product = by_product.dropna(subset=["purchase"]).drop_duplicates("order_id")
    per_order = return_rows.drop_duplicates("order_id")[["order_id", "key", "ts"]].sort_values(
        "ts", kind="stable"
    )
    purchases = purchase_lines.drop_duplicates("purchase")[["purchase", "key", "ts"]]
    by_customer = pd.merge_asof(per_order, purchases, on="ts", by="key", direction="backward")
    linked = by_customer.set_index("order_id")["purchase"].astype("string")
    linked.update(first_by_product.set_index("order_id")["purchase"].astype("string"))
    return linked.reindex(returns["order_id"]).rename_axis("order_id")


def _orders_from_lines(
    typed: pd.DataFrame,
    raw: pd.DataFrame,
    *,
    statuses: Statuses,
    return_prefixes: tuple[str, ...],
    quarantine: Quarantine,
    engine: Engine | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(purchase orders with the keys of their first line, kept lines, return document -> purchase).

    Rejects whole orders whose lines cannot make an order (an order with any quarantined line is
    rejected whole: its total would lie). A return document (credit note, negative lines) is linked to
    the purchase it returns, which is then `is_returned`; only one the customer bought nothing before
    is quarantined (`return_without_purchase`)."""
    bad_orders = (
        pd.Index(raw.loc[quarantine.rows("orders"), "order_id"].dropna().unique())
        if len(quarantine.rows("orders"))
        else pd.Index([])
    )
    typed = _reject(
        quarantine,
        "orders",
        typed,
        typed["order_id"].isin(bad_orders),
        column="order_id",
        rule="order_has_rejected_line",
        raw=raw,
    )
    orders = aggregate_order_lines(typed, statuses=statuses, return_prefixes=return_prefixes, engine=engine)
    linked = link_returns(typed, orders)
    unmatched = linked.index[linked.isna().to_numpy()]
    typed = _reject(
        quarantine,
        "orders",
        typed,
        typed["order_id"].isin(unmatched),
        column="quantity",
        rule="return_without_purchase",
        raw=raw,
    )
    linked = linked.dropna()
    negative_net = orders.loc[orders["gross"] - orders["discount"] < 0, "order_id"]
    typed = _reject(
        quarantine,
        "orders",
        typed,
        typed["order_id"].isin(negative_net),
        column="discount",
        rule="discount_exceeds_amount",
        raw=raw,
    )
    orders = orders[orders["order_id"].isin(typed["order_id"]) & (orders["purchase_lines"] > 0)].copy()
    linked = linked[linked.isin(orders["order_id"])]
    orders.loc[orders["order_id"].isin(linked), "is_returned"] = True
    keys = typed.drop_duplicates("order_id")[["order_id", "contact_id", "email", "phone"]]
    typed = typed[typed["order_id"].isin(orders["order_id"]) | typed["order_id"].isin(linked.index)]
    orders = orders.merge(keys, on="order_id", how="left", validate="one_to_one")
    return orders, typed, linked


def resolve_records(
    records: pd.DataFrame, *, salt: str, engine: Engine | None = None, weights: np.ndarray | None = None
) -> pd.DataFrame:
    """`features.identity.resolve` of `records`, with the engine given one record per repeated key.

    Most records (every order and event) hold a single key that the person's other orders and events
    repeat. A repeat adds no edge to the key graph, so only its first holder goes to the engine: the
    engine's work and the frames it returns shrink from one row per order and event to about one per
    key. The repeats take their first holder's person; they share its key, so their rule is the key's
    kind; and the first holder's rule becomes the key's kind too unless it is its person's anchor
    (exactly what `resolve` over every record gives). Returns `customer_id` and `match_rule` aligned
    to `records`.

    `weights` (default 1) lets one row stand for that many records holding the same single key, of which
    it is the first: the events arrive as their distinct keys, never one row per event. Its result is
    that first record's; the others share its person and take the key's kind as their rule.
    """
    n = len(records)
    held = np.column_stack([records[k].notna().to_numpy(dtype=bool) for k in KEY_KINDS])
    if not n or not held.any(axis=1).all():
        return resolve(records, salt=salt, engine=engine)  # empty, or keyless rows: resolve refuses
    single = held.sum(axis=1) == 1
    weight = np.ones(n, dtype="int64") if weights is None else np.asarray(weights, dtype="int64")
    if (weight < 1).any() or (~single & (weight > 1)).any():
        raise ValueError("a weighted record stands for records holding one same key: weights >= 1")
    kind = held.argmax(axis=1)
    first = np.arange(n)  # the first record holding the same single key (itself for others)
    repeats = np.zeros(n, dtype="int64")  # records holding a first holder's key, itself included
    for j, name in enumerate(KEY_KINDS):
        rows = np.flatnonzero(single & (kind == j))
        if not len(rows):
            continue
        codes, _ = pd.factorize(records[name].iloc[rows], use_na_sentinel=True)
        _, first_at = np.unique(codes, return_index=True)  # codes are numbered in order of appearance
        first[rows] = rows[first_at[codes]]
        repeats[rows[first_at]] = np.bincount(codes, weights=weight[rows]).astype("int64")
    kept = first == np.arange(n)
    reduced = resolve(records.loc[kept, list(KEY_KINDS)].reset_index(drop=True), salt=salt, engine=engine)
    at = (np.cumsum(kept) - 1)[first]  # each record's row in `reduced`
    person = reduced["customer_id"].cat.codes.to_numpy()
    anchor = np.zeros(len(reduced), dtype=bool)
    anchor[np.unique(person, return_index=True)[1]] = True  # records are in priority order
    rules = reduced["match_rule"].cat.categories
    kind_rule = np.array([rules.get_loc(RULES[k]) for k in KEY_KINDS], dtype="int8")
    shared_first = kept & single & (repeats > 1)
    shared_first[kept] &= ~anchor
    full_rule = reduced["match_rule"].cat.codes.to_numpy()[at]
    by_kind = shared_first | ~kept
    full_rule[by_kind] = kind_rule[kind[by_kind]]
    return pd.DataFrame(
        {
            "customer_id": pd.Categorical.from_codes(
                person[at], categories=reduced["customer_id"].cat.categories
            ),
            "match_rule": pd.Categorical.from_codes(full_rule, categories=rules),
        },
        index=records.index,
    )


def source_keys(records: pd.DataFrame) -> pd.api.extensions.ExtensionArray:
    """The business's own key of each resolved record, the one its CRM or ERP knows the customer by:
    a contact's id, a lead's id, the customer number (or CRM contact id) an order or event names.

    Emails and phones are never kept: they are personal data, and only the salted `customer_id` may
    carry a person downstream. A key that looks like an email (a business that numbers customers by
    email) is dropped for the same reason; such records simply have no business key.
    """
    leads = pa.array((records["source"] == "leads").to_numpy(dtype=bool))
    text = {
        c: pa.array(records[c].astype("string[pyarrow]").array) for c in ("source_record_id", "contact_id")
    }
    named = pc.if_else(leads, text["source_record_id"], text["contact_id"])  # arrow: no Python strings
    keys = pd.Series(pd.arrays.ArrowStringArray(named), index=records.index)
    return keys.mask(looks_like_email(keys)).array


def _no_valid_rows(name: str, report: SourceReport, quarantine: Quarantine, sources: SourcesConfig) -> None:
    """Raise the one-line error of a source none of whose rows is usable, with the first reason."""
    first = quarantine.frame().query("source == @name").head(1)
    what = "order" if name == "orders" else "row"
    if not len(first):
        raise ValidationFailed(f"source '{name}' ({report.location}): no data rows")
    row, column, rule = first["row"].iat[0], first["column"].iat[0], first["rule"].iat[0]
    hint = None
    if rule == "invalid_customer_ref":
        key = getattr(sources, name).customer_key
        hint = f"sources.{name}.customer_key is '{key}': " + (
            "each value must be an email, a phone or a CRM contact id; use customer_key: customer_id "
            "for a column of customer numbers"
            if key == "contact"
            else "the mapped column must hold a customer number on every row"
        )
    raise ValidationFailed(
        f"source '{name}' ({report.location}): no usable {what} (e.g. row {row}, column {column}: {rule})",
        hint=hint,
    )


def _text(values: pd.Series) -> pd.api.extensions.ExtensionArray:
    """Nullable strings, arrow-backed (cheap for millions of rows; parquet stores them as text)."""
    return values.astype("string[pyarrow]").array


def _ts(values: pd.Series | np.ndarray) -> pd.Series:
    return pd.Series(values).astype(TS_DTYPE).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- pure core
def ingest_frames(
    raw_tables: dict[str, RawTable | None],
    *,
    sources: SourcesConfig,
    identity: IdentityConfig,
    as_of: pd.Timestamp | None = None,
    engine: Engine | None = None,
    step: Callable[[str], None] | None = None,
) -> IngestResult:
    """Validate, resolve and shape the sources into the clean tables (pure: no I/O).

    `raw_tables` maps each source name to what the reader returned, or None when it is not configured
    (orders must be present). `as_of` is the data's clock; None derives it from the sources
    (`features.clock.derive_as_of`). Rows dated after `as_of` + `sources.future_tolerance_hours` are
    quarantined. Raises ValidationFailed when nothing usable remains of the orders, SourceError when
    `as_of` is before every row of a source. Order lines aggregate on `engine` (an embedded DuckDB
    when None). The events are typed and validated chunk by chunk through a temporary folder, and the
    clean orders, events and identity map are written there by DuckDB (`SpooledTable`, kept with the
    result until it is let go); identities are resolved on the orders' and events' distinct keys.
    """
    workdir = tempfile.TemporaryDirectory(prefix="persona-ingest-")
    folder = Path(workdir.name)
    try:
        result = _ingest_frames(
            raw_tables,
            sources=sources,
            identity=identity,
            as_of=as_of,
            engine=engine,
            folder=folder,
            step=step,
        )
    except BaseException:
        workdir.cleanup()
        raise
    for path in folder.iterdir():  # the staged sources are used up: only the spooled tables stay
        if path.name != "spooled":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    result.workdir = workdir
    return result


def _ingest_frames(
    raw_tables: dict[str, RawTable | None],
    *,
    sources: SourcesConfig,
    identity: IdentityConfig,
    as_of: pd.Timestamp | None,
    engine: Engine | None,
    folder: Path,
    step: Callable[[str], None] | None = None,
) -> IngestResult:
    step = step or (lambda _message: None)
    quarantine = Quarantine()
    reports: dict[str, SourceReport] = {}
    typed: dict[str, pd.DataFrame] = {}
    raws: dict[str, pd.DataFrame] = {}
    staged: dict[str, StagedSource] = {}
    region = identity.default_region
    phone_cache: dict[str, str | None] = {}  # one parse per distinct phone text across all sources
    for name in SOURCES:
        table = raw_tables.get(name)
        if table is None:
            if name == "orders":
                raise SourceError("source 'orders' is required but was not read")
            reports[name] = SourceReport(status="absent")
            continue
        if name in CHUNKED_SOURCES:
            staged[name], reports[name] = _stage_source(
                table, cfg=getattr(sources, name), quarantine=quarantine, folder=folder, step=step
            )
            continue
        typed[name], raws[name], reports[name] = _type_source(
            table, cfg=getattr(sources, name), quarantine=quarantine
        )
    # Intermediate frames are let go as soon as they are used up (`del`): the peak memory of a run is
    # the sum of the copies alive at once. The raw tables stay alive while the caller holds them.
    del raw_tables, table
    given = as_of is not None
    if as_of is None:
        # every activity timestamp, read back from the staged files only when the clock is derived
        activity = {
            f"{name}.{column}": typed[name][column]
            for name, columns in ACTIVITY_TIMESTAMPS.items()
            if name in typed
            for column in columns
            if column in typed[name]
        } | {
            f"{name}.{column}": staged[name].column(column)
            for name, columns in ACTIVITY_TIMESTAMPS.items()
            if name in staged
            for column in columns
            if column in staged[name].columns
        }
        as_of = derive_as_of(activity)
        del activity
    if as_of is None:
        raise ValidationFailed(
            f"source 'orders' ({reports['orders'].location}): no readable timestamp in column 'order_ts'"
        )
    tolerance = pd.Timedelta(hours=sources.future_tolerance_hours)
    check_as_of(
        as_of,
        {f"{n}.{c}": typed[n][c] for n, c in REQUIRED_TIMESTAMPS.items() if n in typed and c in typed[n]}
        | {
            f"{n}.{c}": staged[n].earliest(c)
            for n, c in REQUIRED_TIMESTAMPS.items()
            if n in staged and c in staged[n].columns
        },
        tolerance=tolerance,
    )
    for name in list(typed):
        typed[name] = _validate_source(
            name,
            typed[name],
            raws[name],
            cfg=getattr(sources, name),
            latest=as_of + tolerance,
            quarantine=quarantine,
        )
        raws[name] = raws[name][[c for c in RAW_QUOTED[name] if c in raws[name]]]
    chunks = {
        name: _validated_chunks(
            st, cfg=getattr(sources, name), latest=as_of + tolerance, quarantine=quarantine
        )
        for name, st in staged.items()
    }

    # Identity keys per source; rows without any usable key cannot be attributed to a person.
    keyed: dict[str, pd.DataFrame] = {}
    contact_ids = pd.Index([], dtype="string[pyarrow]")
    if "contacts" in typed:
        c = typed["contacts"]
        keys = pd.DataFrame(
            {
                "contact_id": c["contact_id"],
                "email": normalize_emails(c["email"]) if "email" in c else pd.NA,
                "phone": normalize_phones(c["phone"], default_region=region, cache=phone_cache)
                if "phone" in c
                else pd.NA,
            },
            index=c.index,
        ).astype("string[pyarrow]")
        keyed["contacts"] = pd.concat(
            [c.drop(columns=[k for k in ("email", "phone") if k in c]), keys.drop(columns="contact_id")],
            axis=1,
        )
        contact_ids = pd.Index(c["contact_id"].unique())
    if "leads" in typed:
        ld = typed["leads"]
        keys = pd.DataFrame(
            {
                "contact_id": pd.NA,
                "email": normalize_emails(ld["email"]) if "email" in ld else pd.NA,
                "phone": normalize_phones(ld["phone"], default_region=region, cache=phone_cache)
                if "phone" in ld
                else pd.NA,
            },
            index=ld.index,
        ).astype("string[pyarrow]")
        with_keys = pd.concat([ld.drop(columns=[k for k in ("email", "phone") if k in ld]), keys], axis=1)
        column = "email" if "email" in raws["leads"] else "phone"
        keyed["leads"] = _reject(
            quarantine,
            "leads",
            with_keys,
            ~_has_key(keys),
            column=column,
            rule="no_contact_key",
            raw=raws["leads"],
        )
    lines_layout = sources.orders.layout == "order_lines"
    statuses = _statuses(sources.orders)
    # The kept orders and events go back to Parquet chunk by chunk: identity resolution sees their
    # distinct keys, and DuckDB writes their clean tables and identity rows from the files.
    spools = {name: Spool(folder / f"{name}.kept.parquet") for name in ("orders", "events") if name in chunks}
    for name, ref in (("orders", "customer_ref"), ("events", "user_ref")):
        parts, raw_parts = [], []
        validated = 0
        for frame, raw in chunks[name] if name in chunks else [(typed.get(name), raws.get(name))]:
            if frame is None:
                continue
            validated += len(frame)
            step(f"validating {name}: {validated:,} rows")
            if name in chunks and name == "orders" and lines_layout:  # whole orders are rejected later
                raw_parts.append(raw[[c for c in RAW_QUOTED[name] if c in raw]])
            keys = _route_refs(
                frame[ref],
                customer_key=getattr(sources, name).customer_key,
                contact_ids=contact_ids,
                default_region=region,
                phone_cache=phone_cache,
            )
            with_keys = pd.concat([frame.drop(columns=ref), keys], axis=1)
            kept = _reject(
                quarantine,
                name,
                with_keys,
                ~_has_key(keys),
                column=ref,
                rule="invalid_customer_ref",
                raw=raw,
            )
            if name == "events":
                spools[name].append(_event_rows(kept))
            elif not lines_layout:
                rows = kept.index.to_numpy(dtype="int64")
                spools[name].append(_order_rows(kept, rows=rows, statuses=statuses, lines=False))
            else:
                parts.append(kept)
        if parts:
            keyed[name] = parts[0] if len(parts) == 1 else pd.concat(parts)
        if raw_parts:
            raws[name] = pd.concat(raw_parts)
        del parts, raw_parts

    order_keys = None  # lines: each order's keys, to give its lines their person
    if lines_layout:
        orders_frame, kept_lines, linked_returns = _orders_from_lines(
            keyed["orders"],
            raws["orders"],
            statuses=statuses,
            return_prefixes=tuple(sources.orders.return_prefixes),
            quarantine=quarantine,
            engine=engine,
        )
        reports["orders"].notes.append(f"{len(kept_lines)} order lines -> {len(orders_frame)} orders")
        if len(linked_returns):
            reports["orders"].notes.append(
                f"{len(linked_returns)} returns/cancellations linked to "
                f"{linked_returns.nunique()} purchases (counted as returned)"
            )
        rows = np.arange(len(orders_frame), dtype="int64")  # first-seen order
        spools["orders"].append(_order_rows(orders_frame, rows=rows, statuses=statuses, lines=True))
        order_keys = orders_frame[["order_id", *KEY_KINDS]]
        del orders_frame
    del typed, raws, keys, with_keys, frame, kept  # the quarantine holds the raw values it needs
    for name, spool in spools.items():
        spool.close()
        keyed[name] = _spooled_keys(spool)  # one row per distinct key, in order of first use
    # A source with no valid row stops the run (nothing is written, so the previous good output stays
    # in place): an empty optional source is a mistake to fix, or `sources.<name>: null`.
    for name in ("orders", *(n for n in SOURCES if n in keyed and n != "orders")):
        if keyed[name].empty:
            _no_valid_rows(name, reports[name], quarantine, sources)

    # Resolve: one record per contact and lead, one per distinct key of the orders and events (with
    # the number of rows naming it), in priority order.
    present = [n for n in SOURCES if n in keyed]
    record_ids = {
        "contacts": keyed.get("contacts", pd.DataFrame()).get("contact_id"),
        "leads": keyed.get("leads", pd.DataFrame()).get("lead_id"),
        # an order's or event's own id is written from its spool
        **{n: pd.Series(pd.NA, index=keyed[n].index, dtype="string[pyarrow]") for n in spools},
    }

    def stacked(columns: dict[str, pd.Series]) -> pd.Series:
        # arrow-backed text concatenates as chunks: the records share the sources' buffers
        return pd.concat(
            [columns[n].astype("string[pyarrow]").reset_index(drop=True) for n in present], ignore_index=True
        )

    records = pd.DataFrame(
        {
            **{k: stacked({n: keyed[n][k] for n in present}) for k in KEY_KINDS},
            "source_record_id": stacked(record_ids),
        },
        copy=False,
    )
    sizes = [len(keyed[n]) for n in present]
    bounds = np.cumsum([0, *sizes])
    span = {n: slice(bounds[i], bounds[i + 1]) for i, n in enumerate(present)}
    records["source"] = pd.Categorical.from_codes(
        np.repeat(np.arange(len(present)), sizes), categories=present
    )
    weights = np.ones(len(records), dtype="int64")
    for name in spools:
        weights[span[name]] = keyed[name]["uses"].to_numpy(dtype="int64")
    step(f"resolving identities: {len(records):,} records")
    resolved = resolve_records(records, salt=identity.salt.get_secret_value(), engine=engine, weights=weights)
    records["customer_id"] = resolved["customer_id"].array
    records["match_rule"] = resolved["match_rule"].array
    records["source_key"] = source_keys(records)
    del resolved
    cid = {n: records["customer_id"].array[span[n]] for n in present}

    # Clean tables: orders and events written by DuckDB from their spools.
    step("writing clean tables")
    out = folder / "spooled"
    out.mkdir(exist_ok=True)
    per_key, copies = {}, []
    for name in spools:
        per_key[name], repeats = _per_key(keyed[name], records.iloc[span[name]])
        copies.append(repeats)
    orders = _spooled_table(
        spools["orders"],
        per_key["orders"],
        columns=ORDER_COLUMNS,
        order=["order_ts", "order_id"],
        empty=EMPTY_ORDERS,
        path=out / "orders.parquet",
    )
    order_lines = None
    if order_keys is not None:
        node = keyed["orders"]["_kind"].astype(str) + "\x1f" + keyed["orders"]["_key"].astype(str)
        person = pd.Series(np.asarray(cid["orders"], dtype=object), index=node.to_numpy())
        held = order_keys[list(KEY_KINDS)].notna().to_numpy()
        key = order_keys["contact_id"].fillna(order_keys["email"]).fillna(order_keys["phone"])
        order_node = pd.Series(held.argmax(axis=1).astype(str)) + "\x1f" + key.astype(str).to_numpy()
        order_lines = _clean_order_lines(
            kept_lines,
            linked=linked_returns,
            owner=pd.Series(
                person.reindex(order_node.to_numpy()).to_numpy(), index=order_keys["order_id"].to_numpy()
            ),
            return_prefixes=tuple(sources.orders.return_prefixes),
        )
        del order_keys, kept_lines
    events = None
    if "events" in spools:
        events = _spooled_table(
            spools["events"],
            per_key["events"],
            columns=EVENT_COLUMNS,
            order=["event_ts"],
            empty=EMPTY_EVENTS,
            path=out / "events.parquet",
        )

    leads = None
    if "leads" in keyed:
        ld = keyed["leads"]

        def opt(name: str, dtype: str = "string") -> pd.Series:
            missing = np.nan if dtype == "float64" else pd.NA  # a float64 Series cannot hold pd.NA
            return ld[name] if name in ld else pd.Series(missing, index=ld.index, dtype=dtype)

        converted_at = opt("converted_at", TS_DTYPE)
        # Without a `converted` flag a conversion timestamp speaks for itself.
        converted = (
            opt("converted", "boolean").fillna(False).astype(bool)
            if "converted" in ld
            else converted_at.notna()
        )
        leads = pd.DataFrame(
            {
                "lead_id": _text(ld["lead_id"]),
                "customer_id": cid["leads"],
                "created_ts": _ts(ld["created_at"]),
                "source": _text(opt("source")),
                "campaign": _text(opt("campaign")),
                "engagement_score": opt("engagement_score", "float64").to_numpy(
                    dtype="float64", na_value=np.nan
                ),
                "converted_ts": _ts(converted_at.where(converted.to_numpy())),
            }
        )

    stamps = {
        "contacts": keyed["contacts"]["signup_date"]
        if "contacts" in keyed and "signup_date" in keyed["contacts"]
        else pd.Series(pd.NaT, index=range(len(keyed.get("contacts", []))), dtype=TS_DTYPE),
        "leads": keyed["leads"]["created_at"] if "leads" in keyed else None,
        # per distinct key: its earliest order or event
        **{n: keyed[n]["first_ts"] for n in spools},
    }
    customers = _customers(
        records=records,
        stamps={n: stamps[n].reset_index(drop=True) for n in present},
        contacts=keyed["contacts"].assign(customer_id=cid["contacts"]) if "contacts" in keyed else None,
    )
    counts = records["match_rule"].value_counts()
    rules = pd.Series(counts.to_numpy(dtype="int64"), index=counts.index.astype(str))
    for repeats in copies:
        rules = rules.add(repeats, fill_value=0).astype("int64")
    rules = rules.sort_values(ascending=False, kind="stable")
    # the contacts' and leads' records, then the spooled sources' rows (categoricals as plain text)
    head = records.iloc[: bounds[present.index("orders")]]
    identity_map = write_parts(
        out / "identity_map.parquet",
        schema=_parquet_table(head[IDENTITY_COLUMNS].iloc[:0]).schema,
        parts=[
            _parquet_table(head[IDENTITY_COLUMNS]),
            *((spools[n], _identity_rows(n), {"per_key": per_key[n]}) for n in spools),
        ],
    )
    del records, head

    # Counts: a row counts as quarantined once however many rules it broke.
    for name in present:
        rep = reports[name]
        rep.quarantined = len(quarantine.rows(name))
        rep.kept = rep.read - rep.duplicates_removed - rep.quarantined
    tables: dict[str, pd.DataFrame | SpooledTable | None] = {
        "customers": customers,
        "identity_map": identity_map,
        "orders": orders,
        "order_lines": order_lines,
        "events": events,
        "leads": leads,
        "quarantine": quarantine.frame(),
    }
    rules = rules[rules > 0]
    return IngestResult(
        tables=tables,
        sources=reports,
        as_of=as_of,
        match_rules={str(k): int(v) for k, v in rules.items()},
        as_of_given=given,
        future_tolerance_hours=sources.future_tolerance_hours,
    )


def _clean_order_lines(
    lines: pd.DataFrame, *, linked: pd.Series, owner: pd.Series, return_prefixes: tuple[str, ...]
) -> pd.DataFrame:
    """The kept order lines, products included (what recommendations will learn from): one row per
    line, with its customer, `is_return` and, for a return document, the purchase order it returns."""

    def opt(name: str, dtype: str = "string[pyarrow]") -> pd.Series:
        return lines[name] if name in lines else pd.Series(pd.NA, index=lines.index, dtype=dtype)

    order_id = lines["order_id"].astype("string")
    returns = order_id.map(linked).astype("string")
    owner_order = returns.fillna(order_id)
    out = pd.DataFrame(
        {
            "order_id": _text(order_id),
            "customer_id": owner.reindex(owner_order.to_numpy()).to_numpy(dtype=object),
            "order_ts": _ts(lines["order_ts"]),
            "product_id": _text(opt("product_id")),
            "description": _text(opt("description")),
            "category": _text(opt("category")),
            "quantity": lines["quantity"].to_numpy(dtype="float64"),
            "unit_price": lines["unit_price"].to_numpy(dtype="float64"),
            "is_return": return_lines(lines, return_prefixes=return_prefixes),
            "returns_order_id": _text(returns),
        }
    )
    out["customer_id"] = _text(out["customer_id"])
    return out.sort_values(["order_ts", "order_id"], kind="stable").reset_index(drop=True)


def _customers(
    *,
    records: pd.DataFrame,
    stamps: dict[str, pd.Series],
    contacts: pd.DataFrame | None,
) -> pd.DataFrame:
    """One row per person: consent, CRM profile, first seen, the sources the person appears in.

    `records` is the resolved record list (`source`, `customer_id`); `stamps[source]` the timestamps
    of that source's records, aligned to its slice of `records`; `contacts` the kept contacts with
    their `customer_id`.
    """
    # Both are categorical: work on their integer codes.
    codes = records["customer_id"].cat.codes.to_numpy()
    uniques = records["customer_id"].cat.categories.to_numpy()
    source_codes = records["source"].cat.codes.to_numpy()
    source_names = list(records["source"].cat.categories)
    member = np.zeros((len(uniques), len(source_names)), dtype=bool)
    member[codes, source_codes] = True
    # First seen: the earliest timestamp of any record, as int64 microseconds (NaT = int64 min, skipped).
    ts = pd.concat([stamps[n] for n in source_names], ignore_index=True).astype(TS_DTYPE)
    us = ts.to_numpy(dtype="datetime64[us]").view("int64")
    known = ~ts.isna().to_numpy()
    first = np.full(len(uniques), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, codes[known], us[known])
    first_seen = pd.Series(
        np.where(first == np.iinfo(np.int64).max, np.datetime64("NaT"), first.astype("datetime64[us]")),
        dtype="datetime64[us]",
    ).dt.tz_localize("UTC")
    order = np.argsort(uniques, kind="stable")
    names = sorted(source_names)
    columns = [source_names.index(n) for n in names]
    ids = pd.Index(np.asarray(uniques, dtype=object)[order], name="customer_id")
    out = pd.DataFrame(index=ids)
    out["consent_profiling"] = True
    out["signup_ts"] = pd.Series(pd.NaT, index=ids, dtype=TS_DTYPE)
    for name in ("region", "city", "acquisition_channel", "customer_type"):
        out[name] = pd.Series(pd.NA, index=ids, dtype="string[pyarrow]")
    if contacts is not None:
        c = contacts
        if "consent_profiling" in c:
            # One withdrawn contact withdraws the person; empty = never asked = allowed.
            withdrawn = c.loc[c["consent_profiling"].eq(False).fillna(False).astype(bool), "customer_id"]
            out.loc[out.index.isin(withdrawn), "consent_profiling"] = False
        if "signup_date" in c:
            out["signup_ts"] = (
                c.groupby("customer_id", observed=True)["signup_date"].min().reindex(ids).astype(TS_DTYPE)
            )
        profile = [n for n in ("region", "city", "acquisition_channel", "customer_type") if n in c]
        if profile:
            # The most recently updated contact speaks first; older ones fill its gaps.
            by_recency = (
                c.sort_values("last_updated", ascending=False, na_position="last", kind="stable")
                if "last_updated" in c
                else c
            )
            latest = by_recency.groupby("customer_id", sort=False, observed=True)[profile].first()
            for name in profile:
                out[name] = _text(latest[name].reindex(ids))
    out["is_customer"] = member[order, source_names.index("orders")]
    picked = member[order][:, columns]
    out["sources"] = [[n for n, hit in zip(names, row, strict=True) if hit] for row in picked]
    out["first_seen_ts"] = first_seen.to_numpy()[order]
    out["first_seen_ts"] = out["first_seen_ts"].astype(TS_DTYPE)
    out["consent_profiling"] = out["consent_profiling"].astype(bool)
    return out.reset_index()[CUSTOMER_COLUMNS]


# ------------------------------------------------------------------------------------------------ I/O
def clean_dir(settings: Settings) -> Path:
    """Where `persona ingest` writes: `{data_dir}/clean`."""
    return Path(settings.data_dir) / "clean"


def _parquet_table(frame: pd.DataFrame) -> pa.Table:
    """`frame` as written to `clean/`: timestamps in microseconds UTC, categoricals as plain text."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us", tz="UTC")))
        elif pa.types.is_dictionary(f.type) or pa.types.is_large_string(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))


def _write_parquet(frame: pd.DataFrame | SpooledTable, path: Path) -> None:
    if isinstance(frame, SpooledTable):  # already written by the engine
        shutil.copyfile(frame.path, path)
        return
    pq.write_table(_parquet_table(frame), path)


def write_clean(result: IngestResult, settings: Settings) -> Path:
    """Write every table and the report to `clean/` atomically: all files go to temporary names first
    and replace the old ones only once all are written; tables of now-absent sources are removed."""
    out = clean_dir(settings)
    out.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged: list[tuple[Path, Path]] = []
    try:
        for name, frame in result.tables.items():
            if frame is None:
                continue
            tmp = out / f".{name}.{token}.parquet.tmp"
            _write_parquet(frame, tmp)
            staged.append((tmp, out / f"{name}.parquet"))
        tmp = out / f".{REPORT_FILE}.{token}.tmp"
        tmp.write_text(json.dumps(result.report(), indent=2) + "\n", encoding="utf-8")
        staged.append((tmp, out / REPORT_FILE))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for leftover in out.glob(f".*.{token}.*"):
            leftover.unlink(missing_ok=True)
        raise
    for name, frame in result.tables.items():
        if frame is None:
            (out / f"{name}.parquet").unlink(missing_ok=True)
    for tmp, final in staged:  # the report goes last: it marks a complete output
        os.replace(tmp, final)
    return out


def resolve_as_of(settings: Settings, as_of: datetime | str | None = None) -> pd.Timestamp | None:
    """The run's given `as_of` (UTC): the argument, else `sources.as_of`; None = derive it from the
    sources' latest activity (never the wall clock)."""
    value = as_of if as_of is not None else settings.sources.as_of
    return None if value is None else as_utc(value)


def read_sources(
    settings: Settings,
    *,
    progress: Callable[[list[str]], Iterable[str]] | None = None,
    lazy: bool = True,
) -> dict[str, RawTable | None]:
    """Read every configured source (None for an unconfigured optional one). With `lazy`, a file of
    `CHUNKED_SOURCES` is only opened: `ingest_frames` reads it chunk by chunk; without, every source is
    read whole (for a caller that keeps the raw rows)."""
    names = list(SOURCES)
    out: dict[str, RawTable | None] = {}
    for name in progress(names) if progress else names:
        cfg: SourceConfig = getattr(settings.sources, name)
        chunked = lazy and name in CHUNKED_SOURCES
        out[name] = read_source(name, cfg, settings=settings, lazy=chunked) if cfg.configured else None
    return out


def run_ingest(
    settings: Settings,
    *,
    as_of: datetime | str | None = None,
    progress: Callable[[list[str]], Iterable[str]] | None = None,
    step: Callable[[str], None] | None = None,
) -> IngestResult:
    """Read, validate, resolve and write the clean tables; returns the result (tables and report).
    `progress` wraps the list of sources read; `step` hears each phase of the work (core.progress.stepper)."""

    require_private_salt(settings)
    stamp = resolve_as_of(settings, as_of)
    with open_engine(settings) as engine:  # order lines aggregate on the configured engine
        # not held here: ingest_frames lets the raw tables go once they are typed
        result = ingest_frames(
            read_sources(settings, progress=progress),
            sources=settings.sources,
            identity=settings.identity,
            as_of=stamp,
            engine=engine,
            step=step,
        )
    if step is not None:
        step("publishing: clean tables, consent")
    publish(result, settings)
    return result


def publish(result: IngestResult, settings: Settings) -> None:
    """Apply the consent list to `result`, write its clean tables and sync the CRM's withdrawals (the
    end of `run_ingest`, shared with the incremental ingest of `persona refresh`)."""
    crm_withdrawn = honour_consent_list(result, settings)
    write_clean(result, settings)
    from core.statedb import make_state_engine
    from features import consent

    # after the clean tables are written: the list never names a withdrawal the tables do not carry
    consent.sync_from_crm(make_state_engine(settings.url(settings.state_url)), crm_withdrawn)


def honour_consent_list(result: IngestResult, settings: Settings) -> set[str]:
    """Mark customers withdrawn by `persona consent withdraw` or `persona forget` (the consent list in
    the state database) as not consenting, whatever the CRM says now. Returns the ids the CRM source
    itself lists as withdrawn (before this override)."""
    from core.statedb import make_state_engine
    from features import consent

    customers = result.tables["customers"]
    assert customers is not None
    crm_withdrawn = set(customers.loc[~customers["consent_profiling"], "customer_id"].astype(str))
    engine = make_state_engine(settings.url(settings.state_url))
    consent.create_schema(engine)
    listed = consent.withdrawn_ids(engine, sources=(consent.CLI, consent.FORGET))
    if listed:
        customers.loc[customers["customer_id"].astype(str).isin(listed), "consent_profiling"] = False
    return crm_withdrawn


def load_clean(settings: Settings, table: str) -> pd.DataFrame | None:
    """A clean table written by `persona ingest`; None when its optional source was absent.

    Raises SourceError when ingest has not run (or a required table is missing).
    """
    if table not in CLEAN_TABLES:
        raise ValueError(f"unknown clean table {table!r}; known: {', '.join(CLEAN_TABLES)}")
    folder = clean_dir(settings)
    path = folder / f"{table}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    report_path = folder / REPORT_FILE
    if not report_path.is_file():
        raise SourceError(f"no clean data in {folder}", hint="run `persona ingest` first")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if table in OPTIONAL_SOURCES and table in report.get("absent", []):
        return None
    if table == "order_lines":  # written only for orders given as order lines
        return None
    raise SourceError(f"clean table missing: {path}", hint="run `persona ingest` again")


def withdrawn_customer_ids(settings: Settings) -> set[str]:
    """Customers who withdrew consent to profiling: later stages neither profile nor tag them. The
    clean customers table as of the last ingest, plus the consent list of the state database (a
    `persona consent withdraw` or `persona forget` since then)."""
    from core.statedb import make_state_engine
    from features import consent

    customers = load_clean(settings, "customers")
    assert customers is not None  # customers is always written
    ids = set(customers.loc[~customers["consent_profiling"].astype(bool), "customer_id"].astype(str))
    engine = make_state_engine(settings.url(settings.state_url))
    consent.create_schema(engine)
    return ids | consent.withdrawn_ids(engine)

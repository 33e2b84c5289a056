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
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from configs.sections.identity import IdentityConfig
from configs.sections.sources import SourceConfig, SourcesConfig
from configs.settings import Settings
from core.errors import SourceError, ValidationFailed
from features.identity import resolve
from features.normalize import TS_DTYPE, looks_like_email, normalize_emails, normalize_phones
from features.quarantine import Quarantine
from features.readers import RawTable, read_source
from features.schemas import Statuses, schema_for, type_columns, validate

SOURCES = ("contacts", "leads", "orders", "events")  # identity priority: a person's anchor comes first
OPTIONAL_SOURCES = ("contacts", "events", "leads")
CLEAN_TABLES = ("customers", "identity_map", "orders", "events", "leads", "quarantine")
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
LEAD_COLUMNS = [
    "lead_id",
    "customer_id",
    "created_ts",
    "source",
    "campaign",
    "engagement_score",
    "converted_ts",
]
IDENTITY_COLUMNS = ["source", "source_record_id", "customer_id", "match_rule"]


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

    tables: dict[str, pd.DataFrame | None]
    sources: dict[str, SourceReport]
    as_of: pd.Timestamp
    match_rules: dict[str, int]

    def report(self) -> dict:
        """The JSON-able report written to `clean/ingest_report.json`."""
        customers = self.tables["customers"]
        assert customers is not None
        return {
            "as_of": self.as_of.isoformat(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
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


def _prepare(
    raw_table: RawTable, *, cfg: SourceConfig, as_of: pd.Timestamp, quarantine: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame, SourceReport]:
    """Deduplicate, type and validate one source. Returns (typed rows that passed, raw rows, report);
    both frames are indexed by the 0-based position of the row in the source."""
    source, raw = raw_table.source, raw_table.frame
    report = SourceReport(
        status="ok",
        location=raw_table.location,
        read=len(raw),
        missing_optional_columns=raw_table.missing_optional,
    )
    duplicated = raw.duplicated(keep="first")
    report.duplicates_removed = int(duplicated.sum())
    raw = raw[~duplicated.to_numpy()]
    kind_key = "order_lines" if source == "orders" and cfg.layout == "order_lines" else source
    typed = type_columns(
        kind_key,
        raw,
        timezone=cfg.timezone,
        quarantine=quarantine,
        source=source,
        location=raw_table.location,
    )
    schema = schema_for(
        kind_key,
        as_of=as_of,
        statuses=_statuses(cfg) if source == "orders" else None,
        max_amount=cfg.max_amount,
        max_quantity=cfg.max_quantity,
    )
    validate(typed, schema, raw=raw, quarantine=quarantine, source=source)
    return typed.drop(index=quarantine.rows(source), errors="ignore"), raw, report


def _route_refs(
    refs: pd.Series, *, customer_key: str, contact_ids: pd.Index, default_region: str, phone_cache: dict
) -> pd.DataFrame:
    """Identity keys of an order/event reference: a ready customer id, a known CRM contact id, an email
    (it has an '@') or a phone. Computed once per distinct reference."""
    if customer_key == "customer_id":
        return pd.DataFrame({"contact_id": refs, "email": pd.NA, "phone": pd.NA}, index=refs.index).astype(
            "string[pyarrow]"
        )
    codes, uniques = pd.factorize(refs, use_na_sentinel=True)
    distinct = pd.Series(uniques, dtype="string[pyarrow]")
    is_contact = distinct.isin(contact_ids).to_numpy()
    is_email = looks_like_email(distinct).to_numpy() & ~is_contact
    keys = pd.DataFrame(
        {
            "contact_id": distinct.where(is_contact),
            "email": normalize_emails(distinct.where(is_email)),
            "phone": normalize_phones(
                distinct.where(~is_contact & ~is_email), default_region=default_region, cache=phone_cache
            ),
        }
    )
    no_key = pd.DataFrame({k: pd.array([pd.NA], dtype="string[pyarrow]") for k in keys.columns})
    keys = pd.concat([keys.astype("string[pyarrow]"), no_key], ignore_index=True)
    picked = keys.take(np.where(codes >= 0, codes, len(keys) - 1))  # the last row: no key at all
    picked.index = refs.index
    return picked


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
    if len(rows):
        quarantine.add(
            source,
            rows,
            column=column,
            rule=rule,
            values=raw[column].loc[rows] if column in raw else pd.Series(index=rows, dtype=object),
        )
    return frame[~mask.to_numpy()]


def aggregate_order_lines(lines: pd.DataFrame, *, statuses: Statuses) -> pd.DataFrame:
    """Order lines -> one row per `order_id` (pure).

    `lines` has `order_id`, `order_ts`, `quantity`, `unit_price` and optionally `discount`, `category`,
    `status`. Purchase lines (quantity > 0) give the order's gross value sum(quantity * unit_price),
    `discount` and `quantity`; `category` is the one with the largest value (ties: first seen);
    `is_returned` = any line with quantity < 0 or a returned status; `is_cancelled` = every purchase line
    has a cancelled status. Returns `order_id`, `order_ts` (earliest line), `gross`, `discount`,
    `quantity`, `category`, `is_returned`, `is_cancelled`, `purchase_lines`, in first-seen order.
    """
    status = lines["status"] if "status" in lines else pd.Series(pd.NA, index=lines.index, dtype="string")
    purchase = (lines["quantity"] > 0).to_numpy()
    returned = (lines["quantity"] < 0).to_numpy() | status.isin(statuses.returned).fillna(False).to_numpy(
        bool
    )
    cancelled = status.isin(statuses.cancelled).fillna(False).to_numpy(bool)
    discount = lines["discount"].fillna(0.0) if "discount" in lines else pd.Series(0.0, index=lines.index)
    work = pd.DataFrame(
        {
            "order_id": lines["order_id"].to_numpy(),
            "order_ts": lines["order_ts"].to_numpy(),
            "gross": np.where(purchase, lines["quantity"] * lines["unit_price"], 0.0),
            "discount": np.where(purchase, discount, 0.0),
            "quantity": np.where(purchase, lines["quantity"], 0.0),
            "purchase_lines": purchase.astype("int64"),
            "cancelled_lines": (purchase & cancelled).astype("int64"),
            "returned": returned,
        }
    )
    orders = work.groupby("order_id", sort=False).agg(
        order_ts=("order_ts", "min"),
        gross=("gross", "sum"),
        discount=("discount", "sum"),
        quantity=("quantity", "sum"),
        purchase_lines=("purchase_lines", "sum"),
        cancelled_lines=("cancelled_lines", "sum"),
        is_returned=("returned", "any"),
    )
    orders["is_cancelled"] = (orders["purchase_lines"] > 0) & (
        orders["cancelled_lines"] == orders["purchase_lines"]
    )
    if "category" in lines:
        by_category = (
            pd.DataFrame(
                {
                    "order_id": work["order_id"],
                    "category": lines["category"].to_numpy(),
                    "gross": work["gross"],
                }
            )
            .dropna(subset=["category"])
            .groupby(["order_id", "category"], sort=False)["gross"]
            .sum()
            .reset_index()
        )
        top = by_category.sort_values("gross", ascending=False, kind="stable").drop_duplicates("order_id")
        orders["category"] = top.set_index("order_id")["category"].reindex(orders.index)
    else:
        orders["category"] = pd.NA
    orders["quantity"] = orders["quantity"].astype("int64")
    return orders.drop(columns="cancelled_lines").reset_index()


def _orders_from_lines(
    typed: pd.DataFrame, raw: pd.DataFrame, *, statuses: Statuses, quarantine: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(orders with the keys of their first line, kept lines). Rejects whole orders whose lines
    cannot make an order; an order with any quarantined line is rejected whole (its total would lie)."""
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
    orders = aggregate_order_lines(typed, statuses=statuses)
    no_purchase = orders.loc[orders["purchase_lines"] == 0, "order_id"]
    typed = _reject(
        quarantine,
        "orders",
        typed,
        typed["order_id"].isin(no_purchase),
        column="quantity",
        rule="return_without_purchase",
        raw=raw,
    )
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
    orders = orders[orders["order_id"].isin(typed["order_id"])]
    keys = typed.drop_duplicates("order_id")[["order_id", "contact_id", "email", "phone"]]
    return orders.merge(keys, on="order_id", how="left", validate="one_to_one"), typed


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
    as_of: pd.Timestamp,
) -> IngestResult:
    """Validate, resolve and shape the sources into the clean tables (pure: no I/O).

    `raw_tables` maps each source name to what the reader returned, or None when it is not configured
    (orders must be present). Raises ValidationFailed when nothing usable remains of the orders.
    """
    quarantine = Quarantine()
    reports: dict[str, SourceReport] = {}
    typed: dict[str, pd.DataFrame] = {}
    raws: dict[str, pd.DataFrame] = {}
    region = identity.default_region
    phone_cache: dict[str, str | None] = {}  # one parse per distinct phone text across all sources
    for name in SOURCES:
        table = raw_tables.get(name)
        if table is None:
            if name == "orders":
                raise SourceError("source 'orders' is required but was not read")
            reports[name] = SourceReport(status="absent")
            continue
        typed[name], raws[name], reports[name] = _prepare(
            table, cfg=getattr(sources, name), as_of=as_of, quarantine=quarantine
        )

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
    for name, ref in (("orders", "customer_ref"), ("events", "user_ref")):
        if name not in typed:
            continue
        frame = typed[name]
        keys = _route_refs(
            frame[ref],
            customer_key=getattr(sources, name).customer_key,
            contact_ids=contact_ids,
            default_region=region,
            phone_cache=phone_cache,
        )
        with_keys = pd.concat([frame.drop(columns=ref), keys], axis=1)
        keyed[name] = _reject(
            quarantine,
            name,
            with_keys,
            ~_has_key(keys),
            column=ref,
            rule="invalid_customer_ref",
            raw=raws[name],
        )

    lines_layout = sources.orders.layout == "order_lines"
    if lines_layout:
        orders_frame, kept_lines = _orders_from_lines(
            keyed["orders"], raws["orders"], statuses=_statuses(sources.orders), quarantine=quarantine
        )
        reports["orders"].notes.append(f"{len(kept_lines)} order lines -> {len(orders_frame)} orders")
    else:
        orders_frame = keyed["orders"]
    if orders_frame.empty:
        first = quarantine.frame().query("source == 'orders'").head(1)
        why = (
            f" (e.g. row {first['row'].iat[0]}, column {first['column'].iat[0]}: {first['rule'].iat[0]})"
            if len(first)
            else ""
        )
        # Nothing is written, so the previous good output stays in place.
        raise ValidationFailed(f"source 'orders' ({reports['orders'].location}): no usable order{why}")

    # Resolve: one record per contact, lead, order and event, in priority order.
    record_ids = {
        "contacts": keyed.get("contacts", pd.DataFrame()).get("contact_id"),
        "leads": keyed.get("leads", pd.DataFrame()).get("lead_id"),
        "orders": orders_frame["order_id"],
        "events": None,
    }
    if "events" in keyed:
        ev = keyed["events"]
        # Without event ids a record is named by its row in the source.
        fallback = pd.Series((ev.index + 1).astype(str), index=ev.index, dtype="string[pyarrow]")
        record_ids["events"] = ev["event_id"].fillna(fallback) if "event_id" in ev else fallback
    present = [n for n in SOURCES if n in keyed]
    frames = {n: (orders_frame if n == "orders" else keyed[n]) for n in present}

    def record_frame(n: str) -> pd.DataFrame:
        keys = frames[n][["contact_id", "email", "phone"]].astype("string[pyarrow]").reset_index(drop=True)
        return keys.assign(source_record_id=record_ids[n].astype("string[pyarrow]").to_numpy())

    records = pd.concat([record_frame(n) for n in present], ignore_index=True)
    sizes = [len(frames[n]) for n in present]
    records["source"] = pd.Categorical.from_codes(
        np.repeat(np.arange(len(present)), sizes), categories=present
    )
    resolved = resolve(records, salt=identity.salt.get_secret_value())
    records["customer_id"] = resolved["customer_id"].array
    records["match_rule"] = resolved["match_rule"].array
    bounds = np.cumsum([0, *sizes])
    cid = {n: records["customer_id"].array[bounds[i] : bounds[i + 1]] for i, n in enumerate(present)}

    # Clean tables.
    o = orders_frame
    if lines_layout:
        orders = pd.DataFrame(
            {
                "order_id": _text(o["order_id"]),
                "customer_id": cid["orders"],
                "order_ts": _ts(o["order_ts"]),
                "amount": (o["gross"] - o["discount"]).to_numpy(dtype="float64"),
                "discount": o["discount"].to_numpy(dtype="float64"),
                "quantity": o["quantity"].to_numpy(dtype="int64"),
                "category": _text(o["category"]),
                "is_returned": o["is_returned"].to_numpy(dtype=bool),
                "is_cancelled": o["is_cancelled"].to_numpy(dtype=bool),
            }
        )
    else:
        statuses = _statuses(sources.orders)
        status = o["status"] if "status" in o else pd.Series(pd.NA, index=o.index, dtype="string")
        discount = o["discount"].fillna(0.0) if "discount" in o else pd.Series(0.0, index=o.index)
        quantity = o["quantity"] if "quantity" in o else pd.Series(1.0, index=o.index)
        category = o["category"] if "category" in o else pd.Series(pd.NA, index=o.index, dtype="string")
        orders = pd.DataFrame(
            {
                "order_id": _text(o["order_id"]),
                "customer_id": cid["orders"],
                "order_ts": _ts(o["order_ts"]),
                "amount": (o["amount"] - discount).to_numpy(dtype="float64"),
                "discount": discount.to_numpy(dtype="float64"),
                "quantity": quantity.to_numpy(dtype="int64"),
                "category": _text(category),
                "is_returned": status.isin(statuses.returned).fillna(False).to_numpy(dtype=bool),
                "is_cancelled": status.isin(statuses.cancelled).fillna(False).to_numpy(dtype=bool),
            }
        )
    orders = orders.sort_values(["order_ts", "order_id"], kind="stable").reset_index(drop=True)

    events = None
    if "events" in keyed:
        ev = keyed["events"]
        channel = ev["channel"] if "channel" in ev else pd.Series(pd.NA, index=ev.index, dtype="string")
        events = pd.DataFrame(
            {
                "customer_id": cid["events"],
                "event_ts": _ts(ev["event_ts"]),
                "event_type": _text(ev["event_type"]),
                "channel": _text(channel),
            }
        )
        events = events.sort_values("event_ts", kind="stable").reset_index(drop=True)

    leads = None
    if "leads" in keyed:
        ld = keyed["leads"]

        def opt(name: str, dtype: str = "string") -> pd.Series:
            return ld[name] if name in ld else pd.Series(pd.NA, index=ld.index, dtype=dtype)

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
        else pd.Series(pd.NaT, index=range(len(frames.get("contacts", []))), dtype=TS_DTYPE),
        "leads": keyed["leads"]["created_at"] if "leads" in keyed else None,
        "orders": orders_frame["order_ts"],
        "events": keyed["events"]["event_ts"] if "events" in keyed else None,
    }
    customers = _customers(
        records=records,
        stamps={n: stamps[n].reset_index(drop=True) for n in present},
        contacts=keyed["contacts"].assign(customer_id=cid["contacts"]) if "contacts" in keyed else None,
    )
    # Categorical columns stay categorical in memory; the parquet writer stores them as plain text.
    identity_map = records[IDENTITY_COLUMNS].copy()

    # Counts: a row counts as quarantined once however many rules it broke.
    for name in present:
        rep = reports[name]
        rep.quarantined = len(quarantine.rows(name))
        rep.kept = rep.read - rep.duplicates_removed - rep.quarantined
    tables: dict[str, pd.DataFrame | None] = {
        "customers": customers,
        "identity_map": identity_map,
        "orders": orders,
        "events": events,
        "leads": leads,
        "quarantine": quarantine.frame(),
    }
    rules = identity_map["match_rule"].value_counts()
    rules = rules[rules > 0]
    return IngestResult(
        tables=tables, sources=reports, as_of=as_of, match_rules={str(k): int(v) for k, v in rules.items()}
    )


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


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us", tz="UTC")))
        elif pa.types.is_dictionary(f.type) or pa.types.is_large_string(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    pq.write_table(table.cast(pa.schema(fields)), path)


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


def resolve_as_of(settings: Settings, as_of: datetime | str | None = None) -> pd.Timestamp:
    """The run's `as_of` (UTC): the argument, else `sources.as_of`, else now."""
    value = as_of if as_of is not None else settings.sources.as_of
    stamp = pd.Timestamp(value) if value is not None else pd.Timestamp.now(tz="UTC")
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).as_unit("us")


def read_sources(
    settings: Settings, *, progress: Callable[[list[str]], Iterable[str]] | None = None
) -> dict[str, RawTable | None]:
    """Read every configured source (None for an unconfigured optional one)."""
    names = list(SOURCES)
    out: dict[str, RawTable | None] = {}
    for name in progress(names) if progress else names:
        cfg: SourceConfig = getattr(settings.sources, name)
        out[name] = read_source(name, cfg, settings=settings) if cfg.configured else None
    return out


def run_ingest(
    settings: Settings,
    *,
    as_of: datetime | str | None = None,
    progress: Callable[[list[str]], Iterable[str]] | None = None,
) -> IngestResult:
    """Read, validate, resolve and write the clean tables; returns the result (tables and report)."""
    from features.salt_guard import require_private_salt

    require_private_salt(settings)
    stamp = resolve_as_of(settings, as_of)
    raw_tables = read_sources(settings, progress=progress)
    result = ingest_frames(raw_tables, sources=settings.sources, identity=settings.identity, as_of=stamp)
    write_clean(result, settings)
    return result


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
    raise SourceError(f"clean table missing: {path}", hint="run `persona ingest` again")


def withdrawn_customer_ids(settings: Settings) -> set[str]:
    """Customers who withdrew consent to profiling: later stages neither profile nor tag them."""
    customers = load_clean(settings, "customers")
    assert customers is not None  # customers is always written
    return set(customers.loc[~customers["consent_profiling"].astype(bool), "customer_id"].astype(str))

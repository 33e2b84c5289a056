"""Point-in-time customer feature tables: clean tables in, the four Feast source tables out.

`FEATURE_TABLES` is the one list of feature columns per table (docs/CONTRACTS.md "Feature tables");
the Feast repository and the models test their schemas against it. Each table module defines its
features precisely: `features/transactions.py`, `engagement.py`, `leads_features.py`, `profile.py`.

`compute_feature_tables` is pure (clean tables in, DataFrames out): the tables are Ibis expressions run
on the configured engine (features/engine.py: DuckDB by default, Spark); only the finished feature
tables come back as pandas. `build_features` reads `{data_dir}/clean` (orders, events and leads in
place, by the engine), computes, and writes `{data_dir}/features/<table>.parquet` atomically.

Each table is one query per few snapshots (`PASS_ROWS`), over its source's rows prepared once: the
engine then joins and groups a few snapshots' customers at a time, not customers x snapshots, so its
working set stays within memory as the data grows (issue 17: at a million customers the single query
spilled, and its CPU per customer grew with the data).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from configs.settings import ConfigError
from core.errors import SourceError, ValidationFailed
from features.clock import BUILD_REPORT, clean_as_of
from features.engagement import (
    ENGAGEMENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    engagement_features,
    engagement_rows,
)
from features.engine import Engine, open_engine
from features.ingest import load_clean
from features.leads_features import LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS, lead_features, lead_rows
from features.pit import first_seen_from, in_spine_order, spine_customers, time_grid
from features.pit import spine as build_spine
from features.profile import PROFILE_COLUMNS, PROFILE_STRING_COLUMNS, profile_features
from features.snapshots import snapshot_dates
from features.transactions import (
    REQUIRED_ORDER_COLUMNS,
    purchase_rows,
    transaction_columns,
    transaction_features,
)

if TYPE_CHECKING:
    from configs.settings import Settings

log = logging.getLogger(__name__)

CONTRACT_WINDOWS_DAYS = (30, 90, 365)
KEY_COLUMNS = ("customer_id", "event_timestamp", "created")

# The contract's feature columns per table, in order (keys excluded). ONE place: import it, don't copy it.
FEATURE_TABLES: dict[str, tuple[str, ...]] = {
    "customer_transactions": tuple(transaction_columns(list(CONTRACT_WINDOWS_DAYS))),
    "customer_engagement": tuple(ENGAGEMENT_COLUMNS),
    "customer_leads": tuple(LEAD_COLUMNS),
    "customer_profile": tuple(PROFILE_COLUMNS),
}

# The clean source each table is computed from (customers alone feeds the profile, from the CRM contacts).
TABLE_SOURCES: dict[str, str] = {
    "customer_transactions": "orders",
    "customer_engagement": "events",
    "customer_leads": "leads",
    "customer_profile": "contacts",
}

_STRING_FEATURES = {*PROFILE_STRING_COLUMNS, "lead_source"}
_COUNT_PREFIXES = ("frequency_", "visits_", "page_views_", "product_views_", "email_opens_", "email_clicks_")
_COUNT_FEATURES = {
    "category_breadth_365d",
    "orders_lifetime",
    "support_tickets_90d",
    "complaints_90d",
    "complaints_365d",
    "is_open_lead",
}


def feature_dtype(name: str) -> str:
    """The contract dtype of a feature column: `int64` (counts, flags), `float64`, or `string`."""
    if name in _STRING_FEATURES:
        return "string"
    if name in _COUNT_FEATURES or (name.startswith(_COUNT_PREFIXES) and "_trend_" not in name):
        return "int64"
    return "float64"


# feature name -> dtype, for every contract feature (names are unique across tables).
FEATURE_DTYPES: dict[str, str] = {
    name: feature_dtype(name) for cols in FEATURE_TABLES.values() for name in cols
}

_REQUIRED_CUSTOMER_COLUMNS = ("customer_id", "consent_profiling")


@dataclass
class FeatureBuild:
    """Result of a build: the tables computed, and the tables skipped with the reason why."""

    snapshots: list[pd.Timestamp]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    engine: str = ""  # what computed the tables: duckdb | spark
    written: dict[str, int] = field(default_factory=dict)  # rows per table streamed to `out_dir`


@dataclass
class BuildReport:
    """What `build_features` wrote: path and row count per table, skipped tables, notes."""

    snapshots: list[pd.Timestamp]
    written: dict[str, tuple[Path, int]] = field(default_factory=dict)
    as_of: pd.Timestamp | None = None  # the data's clock the tables were built at
    engine: str = ""  # what computed the tables: duckdb | spark
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _require_columns(frame: pd.DataFrame, required: Iterable[str], *, table: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SourceError(
            f"clean table '{table}' lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})",
            hint="re-run `persona ingest`; docs/CONTRACTS.md lists the clean tables' columns",
        )


def _check_customers(customers: pd.DataFrame) -> None:
    _require_columns(customers, _REQUIRED_CUSTOMER_COLUMNS, table="customers")
    duplicated = customers["customer_id"].duplicated(keep=False)
    if duplicated.any():
        first = customers.loc[duplicated, "customer_id"].iloc[0]
        row = int(np.flatnonzero(duplicated.to_numpy())[0]) + 1
        raise ValidationFailed(
            f"clean table 'customers' has customer_id {first} more than once (first at row {row}); "
            "one row per customer is required"
        )


def _has_contacts(customers: pd.DataFrame) -> bool:
    """Whether the CRM contacts source fed the customers table (ingest lists it in `sources`)."""
    if "sources" in customers:
        listed = customers["sources"].explode()
        return bool(listed.astype(object).eq("contacts").any())
    profile_cols = [c for c in (*PROFILE_STRING_COLUMNS, "signup_ts") if c in customers]
    return bool(profile_cols) and bool(customers[profile_cols].notna().any().any())


_ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
BATCH_ROWS = 200_000  # rows per batch streamed from the engine to the Parquet file
# (customer, snapshot) rows per pass of a table's query: the engine's joins and groups hold about this
# many rows' state, whatever the data's size; each pass costs a query (a few tens of ms), so small data
# stays one pass
PASS_ROWS = 250_000


def _contract_columns(expr: ibis.Table, features: list[str]) -> ibis.Table:
    """The engine's side of a finished table: keys and features cast to the contract's dtypes, rows in
    (snapshot, customer_id) order. The rest (timestamps, non-finite values) is done per Arrow batch."""
    columns = {"customer_id": expr.customer_id.cast("string"), "snapshot_us": expr.snapshot_us.cast("int64")}
    columns.update({name: expr[name].cast(feature_dtype(name)) for name in features})
    return in_spine_order(expr.select(**columns))


def _finish_batch(
    batch: pa.RecordBatch, *, table: str, features: list[str], schema: pa.Schema, created_us: int
) -> pa.RecordBatch:
    """One batch of the engine's result in the file's schema: microsecond UTC timestamps, a missing
    value for every NaN or inf (features never hold inf: an overflowed ratio or sum is missing)."""
    timestamp = pa.timestamp("us", tz="UTC")
    arrays = [
        batch.column("customer_id"),
        batch.column("snapshot_us").cast(timestamp),
        pa.array(np.full(batch.num_rows, created_us, dtype="int64")).cast(timestamp),
    ]
    for name in features:
        values = batch.column(name).cast(_ARROW_TYPES[feature_dtype(name)])
        if feature_dtype(name) == "int64" and values.null_count:
            # a count is never undefined: a missing one here is a bug, not data
            raise ValidationFailed(f"feature table '{table}': count column '{name}' has missing values")
        if feature_dtype(name) == "float64":
            values = pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float64()))
        arrays.append(values)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _feature_schema(features: list[str]) -> pa.Schema:
    return arrow_schema(pd.DataFrame(columns=[*KEY_COLUMNS, *features]))


def _passes_batches(
    engine: Engine, passes: list[ibis.Table], *, table: str, features: list[str], created: pd.Timestamp
) -> Iterator[pa.RecordBatch]:
    """The finished table as a stream of Arrow batches straight from the engine (never all in pandas):
    each pass's expression run in turn, lazily (a pass's query starts when the previous one is read)."""
    schema = _feature_schema(features)
    created_us = int(created.as_unit("us").value // 1_000)
    for expr in passes:
        for batch in engine.batches(_contract_columns(expr, features), rows=BATCH_ROWS):
            yield _finish_batch(batch, table=table, features=features, schema=schema, created_us=created_us)


# customers' columns the features read (the rest, e.g. the `sources` list, stays out of the engine)
_CUSTOMER_FEATURE_COLUMNS = (
    "customer_id",
    "consent_profiling",
    "signup_ts",
    "first_seen_ts",
    *PROFILE_STRING_COLUMNS,
)


def compute_feature_tables(
    *,
    customers: pd.DataFrame,
    orders: pd.DataFrame | ibis.Table,
    events: pd.DataFrame | ibis.Table | None,
    leads: pd.DataFrame | ibis.Table | None,
    snapshots: list[pd.Timestamp],
    windows_days: Iterable[int] = CONTRACT_WINDOWS_DAYS,
    created: pd.Timestamp,
    progress: Callable[[list], Iterable] | None = None,
    engine: Engine | None = None,
    out_dir: Path | None = None,
    snapshots_per_pass: int | None = None,
) -> FeatureBuild:
    """Every feature table for every snapshot, from the clean tables (pure: no I/O but the engine's).

    Rows: one per (customer, snapshot) for customers with `first_seen_ts < snapshot` whose consent to
    profiling is not withdrawn, identical across tables. A table whose source is absent (`events`,
    `leads` None, or no CRM contacts in `customers`) is skipped and `skipped[table]` says why.
    `created` is the build time stamped on every row; `progress` wraps the list of tables to compute
    (e.g. `core.progress.track`). `orders`, `events`, `leads` are pandas frames or tables of `engine`
    (e.g. `engine.read_parquet`); without `engine`, an embedded DuckDB computes.

    With `out_dir`, each table streams from the engine to `out_dir/.<table>.parquet.building` (Arrow
    batches, never the whole table in pandas) and `tables` stays empty: `build_features` renames the
    files into place once every table is done.

    Each table is computed `snapshots_per_pass` snapshots at a time (one query per pass, passes in
    snapshot order, so the rows come out in the same order as from one query over every snapshot). A
    row depends only on its customer and snapshot, so the tables are the same for any pass size; small
    passes bound the engine's working set (its joins and groups hold a few snapshots' customers, not
    customers x snapshots), which keeps the cost per customer flat once the data outgrows memory.
    None: as many snapshots as keep a pass near `PASS_ROWS` (customer, snapshot) rows, at least one.
    """
    if snapshots_per_pass is None:
        snapshots_per_pass = max(1, PASS_ROWS // max(1, len(customers)))
    if snapshots_per_pass < 1:
        raise ValueError(f"snapshots_per_pass must be at least 1, got {snapshots_per_pass}")
    if engine is None:
        with open_engine() as own:
            return compute_feature_tables(
                customers=customers,
                orders=orders,
                events=events,
                leads=leads,
                snapshots=snapshots,
                windows_days=windows_days,
                created=created,
                progress=progress,
                engine=own,
                out_dir=out_dir,
                snapshots_per_pass=snapshots_per_pass,
            )
    windows = sorted(set(windows_days))
    missing_windows = sorted(set(CONTRACT_WINDOWS_DAYS) - set(windows))
    if missing_windows:
        raise ConfigError(
            f"features.windows_days must include {list(CONTRACT_WINDOWS_DAYS)} (the contract's columns); "
            f"missing {missing_windows}"
        )
    _check_customers(customers)
    _require_columns(orders, REQUIRED_ORDER_COLUMNS, table="orders")
    if events is not None:
        _require_columns(events, REQUIRED_EVENT_COLUMNS, table="events")
    if leads is not None:
        _require_columns(leads, REQUIRED_LEAD_COLUMNS, table="leads")

    def on_engine(source: pd.DataFrame | ibis.Table) -> ibis.Table:
        return engine.table(source) if isinstance(source, pd.DataFrame) else source

    # sorted: row order is by snapshot first
    result = FeatureBuild(snapshots=sorted(set(snapshots)), engine=engine.name)
    orders_t = on_engine(orders)
    events_t = on_engine(events) if events is not None else None
    leads_t = on_engine(leads) if leads is not None else None
    customers_t = engine.table(customers[[c for c in _CUSTOMER_FEATURE_COLUMNS if c in customers]])
    if "first_seen_ts" not in customers:
        stamped = [(orders_t, "order_ts")]
        stamped += [(events_t, "event_ts")] if events_t is not None else []
        stamped += [(leads_t, "created_ts")] if leads_t is not None else []
        customers_t = first_seen_from(customers_t, stamped)
        result.notes.append(
            "customers has no first_seen_ts: derived from the earliest signup, order, event or lead"
        )

    passes = [
        result.snapshots[i : i + snapshots_per_pass]
        for i in range(0, len(result.snapshots), snapshots_per_pass)
    ]
    allowed = spine_customers(customers_t)
    if len(passes) > 1:  # every pass of every table reads it
        allowed = engine.materialize(allowed)
    grid = time_grid(result.snapshots)
    # per table: the source's rows as the features read them (prepared once), and the features of
    # those rows at a spine; None when the source is absent
    planned: dict[str, tuple[Callable[[], ibis.Table], Callable[[ibis.Table, ibis.Table], ibis.Table]] | None]
    planned = {
        "customer_transactions": (
            lambda: purchase_rows(orders_t),
            lambda rows, spine: transaction_features(rows, spine=spine, windows_days=windows),
        ),
        "customer_engagement": (
            lambda: engagement_rows(events_t, grid=grid),
            lambda rows, spine: engagement_features(rows, spine=spine),
        )
        if events_t is not None
        else None,
        "customer_leads": (lambda: lead_rows(leads_t), lambda rows, spine: lead_features(rows, spine=spine))
        if leads_t is not None
        else None,
        "customer_profile": (lambda: customers_t, lambda rows, spine: profile_features(rows, spine=spine))
        if _has_contacts(customers)
        else None,
    }
    for table, compute in planned.items():
        if compute is None:
            result.skipped[table] = (
                f"the optional source '{TABLE_SOURCES[table]}' is absent from the clean data"
            )
    todo = [(table, steps) for table, steps in planned.items() if steps is not None]
    for table, (prepare, compute) in progress(todo) if progress else todo:
        features = (
            transaction_columns(windows) if table == "customer_transactions" else list(FEATURE_TABLES[table])
        )
        schema = _feature_schema(features)
        # several passes read the prepared rows: computed once (projections, per-cell sums), not per pass
        rows = engine.materialize(prepare()) if len(passes) > 1 else prepare()
        batches = _passes_batches(
            engine,
            [compute(rows, build_spine(allowed, chosen)) for chosen in passes],
            table=table,
            features=features,
            created=created,
        )
        if out_dir is None:
            result.tables[table] = pa.Table.from_batches(list(batches), schema=schema).to_pandas()
        else:
            path = building_path(out_dir, table)
            path.parent.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(path, schema) as writer:
                written = 0
                for batch in batches:
                    writer.write_batch(batch)
                    written += batch.num_rows
            result.written[table] = written
        if len(passes) > 1:
            engine.forget(rows)
    return result


def building_path(out_dir: Path, table: str) -> Path:
    """Where a table is written before it is renamed into place (readers never see half a file)."""
    return out_dir / f".{table}.parquet.building"


def arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The Parquet schema of a feature table: microsecond UTC timestamps, int64, float64, string."""

    kinds = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    fields = [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("created", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    fields += [
        pa.field(name, kinds[feature_dtype(name)]) for name in frame.columns if name not in KEY_COLUMNS
    ]
    return pa.schema(fields)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` via a temporary file and a rename: readers never see half a file."""

    path.parent.mkdir(parents=True, exist_ok=True)
    # features never hold inf: a ratio or sum that overflowed is missing (NaN), which models handle
    floats = frame.select_dtypes(include="float").columns
    if len(floats) and np.isinf(frame[floats].to_numpy(dtype="float64")).any():
        frame = frame.assign(**{c: frame[c].replace([np.inf, -np.inf], np.nan) for c in floats})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table = pa.Table.from_pandas(frame, schema=arrow_schema(frame), preserve_index=False)
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_clean(settings: Settings, table: str) -> pd.DataFrame | None:
    """A clean table written by `persona ingest` (via `features.ingest.load_clean`).

    None when an optional source (events, leads) was absent; SourceError when ingest has not run or a
    required table (customers, orders) is missing.
    """

    try:
        frame = load_clean(settings, table)
    except (OSError, ValueError) as exc:  # pyarrow's errors for damaged files are of these kinds
        path = Path(settings.data_dir) / "clean" / f"{table}.parquet"
        raise SourceError(f"cannot read clean table '{table}' at {path}: {exc}") from None
    if table == "customers" and frame is not None:
        # a withdrawal or erasure since the last ingest counts now (the consent list, state database)
        from core.statedb import make_state_engine
        from features import consent

        engine = make_state_engine(settings.url(settings.state_url))
        consent.create_schema(engine)
        listed = consent.withdrawn_ids(engine)
        if listed:
            frame = frame.copy()
            frame.loc[frame["customer_id"].astype(str).isin(listed), "consent_profiling"] = False
    return frame


def read_clean_table(settings: Settings, engine: Engine, table: str) -> ibis.Table | None:
    """A clean table read in place by the engine (not through pandas); None for an absent optional source."""
    path = Path(settings.data_dir) / "clean" / f"{table}.parquet"
    if not path.is_file():
        frame = read_clean(settings, table)  # None for an absent optional source, else SourceError
        return None if frame is None else engine.table(frame)
    try:
        return engine.read_parquet(path)
    except Exception as exc:  # each engine reports a damaged file with its own exception type
        raise SourceError(
            f"cannot read clean table '{table}' at {path}: {str(exc).splitlines()[0]}"
        ) from None


def _compute(
    settings: Settings,
    *,
    snapshots: list[pd.Timestamp],
    created: pd.Timestamp,
    progress: Callable[[list], Iterable] | None = None,
    out_dir: Path | None = None,
) -> FeatureBuild:
    """The feature tables from `{data_dir}/clean` on the configured engine (`engine:`); with `out_dir`,
    streamed to files there (see `compute_feature_tables`)."""
    customers = read_clean(settings, "customers")  # one row per customer; consent list applied
    assert customers is not None  # read_clean raises when the required table is missing
    with open_engine(settings) as engine:
        return compute_feature_tables(
            customers=customers,
            orders=read_clean_table(settings, engine, "orders"),
            events=read_clean_table(settings, engine, "events"),
            leads=read_clean_table(settings, engine, "leads"),
            snapshots=snapshots,
            windows_days=settings.features.windows_days,
            created=created,
            progress=progress,
            engine=engine,
            out_dir=out_dir,
        )


def build_features(
    settings: Settings,
    *,
    snapshots: Iterable[date] | None = None,
    created: datetime | None = None,
    progress: Callable[[list], Iterable] | None = None,
) -> BuildReport:
    """Read the clean tables, compute every feature table, write them under `{data_dir}/features`.

    `snapshots` overrides the configured ones. Nothing is written unless every table computed. A table
    skipped for an absent source is not written; an older file of it is moved aside to
    `<table>.parquet.stale` so Feast does not serve features of a source that is gone.
    """

    as_of = clean_as_of(settings)
    planned = snapshot_dates(settings.features, snapshots)
    # A snapshot after the data's clock would describe a moment nobody has observed yet.
    dates = [t for t in planned if t <= as_of]
    if not dates:
        raise ConfigError(
            f"features: no snapshot on or before the data's as_of {as_of.isoformat()} "
            f"(planned {planned[0].date() if planned else 'none'} .. {planned[-1].date() if planned else ''})",
            hint="set features.first_snapshot / snapshots within the data's period",
        )
    # `created` is Feast's row-version stamp (newest wins on equal event times): a real build time.
    stamp = pd.Timestamp(created or datetime.now(UTC)).tz_convert("UTC").floor("us")
    out_dir = settings.data_dir / "features"
    try:
        build = _compute(settings, snapshots=dates, created=stamp, progress=progress, out_dir=out_dir)
    except BaseException:
        for name in FEATURE_TABLES:
            building_path(out_dir, name).unlink(missing_ok=True)
        raise
    report = BuildReport(
        snapshots=dates,
        skipped=dict(build.skipped),
        notes=list(build.notes),
        as_of=as_of,
        engine=build.engine,
    )
    if len(dates) < len(planned):
        later = [t for t in planned if t > as_of]
        report.notes.append(
            f"{len(later)} snapshot(s) after the data's as_of {as_of:%Y-%m-%d %H:%M} UTC not built "
            f"({', '.join(str(t.date()) for t in later[:3])}{', ...' if len(later) > 3 else ''})"
        )
    for name, rows in build.written.items():  # every table computed: now they replace the old ones
        path = out_dir / f"{name}.parquet"
        os.replace(building_path(out_dir, name), path)
        report.written[name] = (path, rows)
    # The data's clock travels with the tables: materialization ends at it, serving judges staleness by it.
    stamp_path = out_dir / BUILD_REPORT
    tmp = stamp_path.with_name(f".{BUILD_REPORT}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "as_of": as_of.isoformat(),
                "snapshots": [t.isoformat() for t in dates],
                "created": stamp.isoformat(),
                "engine": build.engine,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    os.replace(tmp, stamp_path)
    for name in build.skipped:
        old = out_dir / f"{name}.parquet"
        if old.is_file():
            os.replace(old, old.with_name(old.name + ".stale"))
            report.notes.append(f"moved the previous {old.name} aside to {old.name}.stale")
    for name, reason in report.skipped.items():
        log.info("features: %s not built: %s", name, reason)
    return report


def append_snapshot(
    settings: Settings, *, snapshot: pd.Timestamp, created: datetime | None = None
) -> BuildReport:
    """Compute the feature tables at one new `snapshot` and add its rows to the existing tables (rows of
    the same snapshot are replaced, so a re-run writes the same tables). Earlier snapshots are kept as
    they are: what `persona refresh` needs, without recomputing the history training uses.

    The snapshot must not be after the clean data's `as_of`.
    """
    from features.clock import BUILD_REPORT, clean_as_of

    as_of = clean_as_of(settings)
    snapshot = pd.Timestamp(snapshot).tz_convert("UTC").as_unit("us")
    if snapshot > as_of:
        raise ConfigError(
            f"features: snapshot {snapshot.date()} is after the data's as_of {as_of.isoformat()}"
        )
    out_dir = settings.data_dir / "features"
    stamp = pd.Timestamp(created or datetime.now(UTC)).tz_convert("UTC").floor("us")
    build = _compute(settings, snapshots=[snapshot], created=stamp)
    report = BuildReport(
        snapshots=[snapshot],
        skipped=dict(build.skipped),
        notes=list(build.notes),
        as_of=as_of,
        engine=build.engine,
    )
    for name, frame in build.tables.items():
        path = out_dir / f"{name}.parquet"
        if path.is_file():
            old = pd.read_parquet(path)
            old = old[pd.to_datetime(old["event_timestamp"], utc=True) != snapshot]
            frame = pd.concat([old, frame], ignore_index=True) if len(old) else frame
        write_parquet_atomic(frame, path)
        report.written[name] = (path, len(frame))
    stamp_path = out_dir / BUILD_REPORT
    previous = json.loads(stamp_path.read_text(encoding="utf-8")) if stamp_path.is_file() else {}
    dates = sorted({*previous.get("snapshots", []), snapshot.isoformat()})
    tmp = stamp_path.with_name(f".{BUILD_REPORT}.tmp")
    tmp.write_text(
        json.dumps({"as_of": as_of.isoformat(), "snapshots": dates, "created": stamp.isoformat()}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    os.replace(tmp, stamp_path)
    return report

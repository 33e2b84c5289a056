"""What the dashboard reads, read cheaply: only the columns and the snapshot it needs from the parquet
tables (parquet statistics give a table's latest snapshot and the data's clock without reading rows), and
grouped counts from the state database. No raw PII is ever read: the clean tables carry none.

Every reader returns plain frames or dicts; a missing file or table is an empty answer, never an error,
because the dashboard shows whatever exists (a deployment may have no events, no leads, no models yet).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from configs.settings import Settings

ORDERS_TABLE, EVENTS_TABLE = "orders", "events"


# ------------------------------------------------------------------------------------------ files
def feature_folder(settings: Settings) -> Path:
    return settings.path(settings.feast.source_dir)


def clean_path(settings: Settings, table: str) -> Path:
    return settings.path("{data_dir}/clean") / f"{table}.parquet"


def scores_path(settings: Settings) -> Path:
    return settings.path("{data_dir}/scores") / "latest.parquet"


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def files_fingerprint(settings: Settings) -> tuple[float, ...]:
    """Changes whenever features, clean tables or scores are rewritten (the cache key of file reads)."""
    folder = feature_folder(settings)
    paths = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    paths += [clean_path(settings, t) for t in ("customers", ORDERS_TABLE, EVENTS_TABLE, "identity_map")]
    paths.append(scores_path(settings))
    return tuple(_mtime(p) for p in paths)


def column_max(path: Path, column: str) -> pd.Timestamp | None:
    """The largest value of a timestamp column, from the parquet row-group statistics (no rows read)."""
    if not path.is_file():
        return None
    meta = pq.ParquetFile(path).metadata
    names = meta.schema.names
    if column not in names:
        return None
    index = names.index(column)
    best = None
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(index).statistics
        if stats is None or not stats.has_min_max:  # no statistics: read the one column instead
            values = pq.read_table(path, columns=[column]).column(column)
            top = pc.max(values).as_py()
            return None if top is None else pd.Timestamp(top)
        value = stats.max
        best = value if best is None or value > best else best
    if best is None:
        return None
    stamp = pd.Timestamp(best)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp


# ------------------------------------------------------------------------------------- the data's clock
def data_as_of(settings: Settings) -> pd.Timestamp | None:
    """The data's clock (never the wall clock): the `as_of` `persona ingest` recorded
    (`features.clock.clean_as_of`, the one source of truth); None before the first ingest."""
    from core.errors import SourceError
    from features.clock import clean_as_of

    try:
        return clean_as_of(settings)
    except SourceError:
        return None


def view_snapshots(settings: Settings) -> dict[str, pd.Timestamp | None]:
    """Latest snapshot of each feature table (Feast view), from statistics."""
    from artifacts.catalog import FEATURE_TABLES

    folder = feature_folder(settings)
    return {name: column_max(folder / f"{name}.parquet", "event_timestamp") for name in FEATURE_TABLES}


# ------------------------------------------------------------------------------------ feature tables
def snapshot_frame(
    settings: Settings, *, columns: list[str] | None = None, snapshots: list[pd.Timestamp] | None = None
) -> pd.DataFrame:
    """Feature rows of the given snapshots (default: the latest), every table joined on
    (customer_id, event_timestamp); only `columns` (plus the keys) when given."""
    from artifacts.catalog import FEATURE_TABLES

    folder = feature_folder(settings)
    latest = view_snapshots(settings)
    first = latest.get(FEATURE_TABLES[0])
    if first is None:
        return pd.DataFrame(columns=["customer_id", "event_timestamp", *(columns or [])])
    wanted = snapshots or [first]
    keys = ["customer_id", "event_timestamp"]
    frame: pd.DataFrame | None = None
    for name in FEATURE_TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            continue
        schema = pq.read_schema(path)
        cols = [c for c in schema.names if c not in ("created",)]
        if columns is not None:
            cols = [c for c in cols if c in keys or c in columns]
        if len(cols) <= 2 and frame is not None:
            continue
        stamps = pa.array(
            [pd.Timestamp(s).to_pydatetime() for s in wanted], type=schema.field("event_timestamp").type
        )
        table = pq.read_table(path, columns=cols, filters=pc.field("event_timestamp").isin(stamps))
        part = table.to_pandas()
        frame = part if frame is None else frame.merge(part, on=keys, how="left")
    return frame if frame is not None else pd.DataFrame(columns=keys)


def all_snapshots(settings: Settings) -> list[pd.Timestamp]:
    """Every snapshot of the transactions table (one column read)."""
    from artifacts.catalog import FEATURE_TABLES

    path = feature_folder(settings) / f"{FEATURE_TABLES[0]}.parquet"
    if not path.is_file():
        return []
    values = pc.unique(pq.read_table(path, columns=["event_timestamp"]).column("event_timestamp"))
    return sorted(pd.Timestamp(v) for v in values.to_pylist())


def consent_counts(settings: Settings) -> dict[str, int]:
    """Customers known, and those who withdrew consent (who are never profiled)."""
    path = clean_path(settings, "customers")
    if not path.is_file():
        return {"known": 0, "withdrawn": 0}
    column = pq.read_table(path, columns=["consent_profiling"]).column("consent_profiling")
    values = column.to_numpy(zero_copy_only=False)
    withdrawn = int(np.sum(values == False))  # noqa: E712 - numpy element-wise, nulls (never asked) allowed
    return {"known": len(values), "withdrawn": withdrawn}


def withdrawn_ids(settings: Settings) -> set[str]:
    path = clean_path(settings, "customers")
    if not path.is_file():
        return set()
    table = pq.read_table(path, columns=["customer_id", "consent_profiling"])
    frame = table.to_pandas()
    return set(frame.loc[frame["consent_profiling"].eq(False), "customer_id"].astype(str))


def latest_scores(settings: Settings) -> pd.DataFrame:
    """The last batch scoring (`persona score --all`): one row per customer, model outputs."""
    path = scores_path(settings)
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


# ------------------------------------------------------------------------------- per-customer lookups
INDEX_ROW_GROUP = 4_096  # rows per row group of a sorted copy: one small group read per lookup


def sorted_copy(source: Path, target: Path, column: str, table: pa.Table | None = None) -> Path | None:
    """`target`: `source` (or `table`, derived from it) sorted by `column` in small row groups, so a
    lookup by `column` reads one row group (parquet statistics prune the rest) instead of the whole
    table; rebuilt when `source` is rewritten. None when `source` does not exist."""
    if not source.is_file():
        return None
    if target.is_file() and _mtime(target) >= _mtime(source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    data = pq.read_table(source) if table is None else table
    data = data.take(pc.sort_indices(data, sort_keys=[(column, "ascending")]))
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    pq.write_table(data, tmp, row_group_size=INDEX_ROW_GROUP)
    tmp.replace(target)  # atomic: another worker building the same copy cannot leave half a file
    return target


_FOOTERS: dict[tuple[str, float], pq.ParquetFile] = {}


def lookup(path: Path | None, column: str, value: str, columns: list[str]) -> pd.DataFrame:
    """The rows of a sorted copy whose `column` equals `value`: only the row groups whose statistics can
    hold it are read (one, in a copy sorted by `column`); the file's footer is parsed once per version."""
    if path is None or not path.is_file():
        return pd.DataFrame(columns=columns)
    stamp = (str(path), _mtime(path))
    handle = _FOOTERS.get(stamp)
    if handle is None:
        handle = pq.ParquetFile(path)
        if len(_FOOTERS) > 64:  # old versions of rewritten copies
            _FOOTERS.clear()
        _FOOTERS[stamp] = handle
    names = handle.schema_arrow.names
    wanted = [c for c in dict.fromkeys([column, *columns]) if c in names]
    index = names.index(column)
    meta = handle.metadata
    groups = []
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(index).statistics
        if stats is None or not stats.has_min_max or stats.min <= value <= stats.max:
            groups.append(rg)
    if not groups:
        return pd.DataFrame(columns=[c for c in columns if c in names])
    table = handle.read_row_groups(groups, columns=wanted)
    table = table.filter(pc.equal(table.column(column), value))
    return table.select([c for c in columns if c in names]).to_pandas()


def by_customer(settings: Settings, table: str) -> Path | None:
    """A copy of a clean table (or of the batch scores, `table="scores"`) sorted by customer_id
    ({data_dir}/dashboard/)."""
    source = scores_path(settings) if table == "scores" else clean_path(settings, table)
    target = settings.path("{data_dir}/dashboard") / f"{table}_by_customer.parquet"
    return sorted_copy(source, target, "customer_id")


def keys_table(settings: Settings, sources_with_keys: tuple[str, ...]) -> pa.Table:
    """(source, key, customer_id) of every business key: record ids of the sources that are customers
    (CRM contacts, leads) and, where the identity map has it, the key a record named its customer by."""
    path = clean_path(settings, "identity_map")
    names = pq.read_schema(path).names
    own = pq.read_table(
        path,
        columns=["source", "source_record_id", "customer_id"],
        filters=pc.field("source").isin(list(sources_with_keys)),
    ).rename_columns(["source", "key", "customer_id"])
    parts = [
        own.cast(pa.schema([("source", pa.string()), ("key", pa.string()), ("customer_id", pa.string())]))
    ]
    if "source_key" in names:
        named = pq.read_table(
            path, columns=["source", "source_key", "customer_id"], filters=pc.field("source_key").is_valid()
        ).rename_columns(["source", "key", "customer_id"])
        parts.append(named.cast(parts[0].schema))
    keys = pa.concat_tables(parts)
    return pa.Table.from_pandas(keys.to_pandas().drop_duplicates(), preserve_index=False)


def key_lookups(settings: Settings, sources_with_keys: tuple[str, ...]) -> tuple[Path, Path] | None:
    """The business keys sorted by key (find a customer by a key) and by customer (the keys a customer
    is known by); None without an identity map."""
    source = clean_path(settings, "identity_map")
    if not source.is_file():
        return None
    folder = settings.path("{data_dir}/dashboard")
    targets = (folder / "keys_by_key.parquet", folder / "keys_by_customer.parquet")
    if all(t.is_file() and _mtime(t) >= _mtime(source) for t in targets):
        return targets
    table = keys_table(settings, sources_with_keys)
    sorted_copy(source, targets[0], "key", table)
    sorted_copy(source, targets[1], "customer_id", table)
    return targets


def lookup_tables(settings: Settings) -> None:
    """Every sorted copy the 360 page reads, built now where its source changed."""
    from serving.dashboard.customer import KEY_SOURCES

    for table in ("customers", ORDERS_TABLE, EVENTS_TABLE, "scores"):
        by_customer(settings, table)
    key_lookups(settings, KEY_SOURCES)


# ------------------------------------------------------------------------------------ state database
def state_engine(settings: Settings) -> sa.Engine:
    from serving.outbox import make_state_engine

    return make_state_engine(settings.url(settings.state_url))


def _has(conn: sa.Connection, table: str) -> bool:
    return sa.inspect(conn).has_table(table)


def state_fingerprint(engine: sa.Engine) -> tuple[Any, ...]:
    """Changes whenever a tag changes or the outbox moves (the cache key of state reads). SQLite: the
    database and WAL files' size and time (no query: counting millions of rows per page view costs more
    than the page); other databases: high-water marks and the outbox's counts per status."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if database and database != ":memory:":
        # An empty WAL file is what opening a connection leaves (no change): only a WAL with pages counts.
        return tuple(
            (p.stat().st_mtime_ns, p.stat().st_size) if p.exists() and p.stat().st_size else None
            for p in (Path(database), Path(f"{database}-wal"))
        )
    with engine.connect() as conn:
        parts: list[Any] = []
        for table, column in (("tag_history", "id"), ("crm_outbox", "id")):
            parts.append(
                conn.execute(sa.text(f"select max({column}), count(*) from {table}")).one()
                if _has(conn, table)
                else None
            )
        if _has(conn, "crm_outbox"):
            parts.append(
                tuple(conn.execute(sa.text("select status, count(*) from crm_outbox group by status")).all())
            )
    return tuple(parts)


def tag_value_counts(engine: sa.Engine) -> pd.DataFrame:
    """Current customers per (tag, value); NULL value = unset."""
    with engine.connect() as conn:
        if not _has(conn, "tag_current"):
            return pd.DataFrame(columns=["tag", "value", "customers"])
        rows = conn.execute(sa.text("select tag, value, count(*) from tag_current group by tag, value")).all()
    return pd.DataFrame(rows, columns=["tag", "value", "customers"])


def tag_moves(engine: sa.Engine, tag: str) -> pd.DataFrame:
    """Changes of one tag per day and (old, new) value: the history a distribution over time is rebuilt
    from (each change moves one customer from `old` to `new`)."""
    with engine.connect() as conn:
        if not _has(conn, "tag_history"):
            return pd.DataFrame(columns=["day", "old_value", "new_value", "n"])
        columns = {c["name"] for c in sa.inspect(conn).get_columns("tag_history")}
        day = "coalesce(as_of, changed_at)" if "as_of" in columns else "changed_at"  # a store made before
        rows = conn.execute(
            sa.text(
                # the data's day the change was computed at; the write time only where that is unknown
                f"select substr(cast({day} as text), 1, 10) as day, old_value, "
                "new_value, count(*) from tag_history where tag = :tag "
                "group by day, old_value, new_value order by day"
            ),
            {"tag": tag},
        ).all()
    return pd.DataFrame(rows, columns=["day", "old_value", "new_value", "n"])


def outbox_counts(engine: sa.Engine) -> dict[str, int]:
    from serving.outbox import STATUSES, Outbox

    with engine.connect() as conn:
        if not _has(conn, "crm_outbox"):
            return dict.fromkeys(STATUSES, 0)
    return Outbox(engine).counts()


def now_utc() -> datetime:
    """The wall clock, only to say when a page was rendered (never to judge the data's age)."""
    return datetime.now(UTC)

"""Materialization at scale: one feature view into the online store in bounded batches.

Feast's own `materialize` loads a view's latest rows whole, turns every value into a protobuf at once
and, on SQLite, writes one `execute` per feature value: memory grows with the customers and a million
customers take most of an hour. Here the latest row per customer is streamed from the feature table
by DuckDB in record batches; each batch is encoded with Feast's own conversion (so the online rows are
byte for byte what Feast writes and reads) and written in one statement per batch (`executemany` in a
transaction on SQLite; Feast's pipelined batch write on Redis and any other store). The view's
materialized interval is then recorded in the registry, as `FeatureStore.materialize` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

# Customers per batch: large enough that per-statement overhead vanishes, small enough that a batch's
# protobufs (about 40 values a customer) stay in the tens of MB.
BATCH_ROWS = 20_000
# DuckDB's own ceiling for finding the latest row per customer (it spills to disk past it).
DUCKDB_MEMORY = "2GB"


@dataclass(frozen=True)
class ViewWrite:
    rows: int  # customers written (latest row per customer in the interval)
    batches: int


def latest_batches(
    path: Path,
    *,
    keys: list[str],
    timestamp: str,
    columns: list[str],
    start: datetime,
    end: datetime,
    created: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """The latest row per entity (`keys`) with `start <= timestamp <= end` (ties: the latest `created`), as
    Feast's offline store selects it, in record batches of at most `batch_rows`."""
    order = f'"{timestamp}" DESC' + (f', "{created}" DESC' if created else "")
    wanted = [*keys, *columns, timestamp, *([created] if created else [])]
    partition = ", ".join(f'"{k}"' for k in keys)
    select = ", ".join(f'"{c}"' for c in dict.fromkeys(wanted))
    query = (
        f"SELECT {select} FROM read_parquet(?) "
        f'WHERE "{timestamp}" >= ? AND "{timestamp}" <= ? '
        f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order}) = 1"
    )
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        yield from con.sql(query, params=[str(path), start, end]).to_arrow_reader(batch_rows)


def _sqlite_writer(store: FeatureStore, view: FeatureView) -> Callable[[list[Any]], None] | None:
    """A bulk writer into Feast's SQLite table for `view` (the same columns and encodings as
    `SqliteOnlineStore.online_write_batch`), or None where that store writes extra columns."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.infra.online_stores.sqlite import _quote_id, _table_id
    from feast.utils import to_naive_utc

    config = store.config
    online = config.online_store
    if getattr(online, "type", "sqlite") != "sqlite":
        return None
    if getattr(online, "vector_enabled", False) or getattr(online, "enable_openai_compatible_store", False):
        return None  # vector and value_num columns: left to Feast's own writer
    conn = store._get_provider().online_store._get_conn(config)
    table = _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    sql = (
        f"INSERT INTO {_quote_id(table)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts"
    )
    version = config.entity_key_serialization_version

    def write(rows: list[Any]) -> None:
        params = []
        for entity_key, values, ts, created in rows:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            ts = to_naive_utc(ts)
            created = to_naive_utc(created) if created is not None else None
            for name, value in values.items():
                params.append(
                    (key, name, value.SerializeToString(), extract_text_and_num(value, False)[0], ts, created)
                )
        with conn:
            conn.executemany(sql, params)

    return write


def write_view(
    store: FeatureStore,
    view: FeatureView,
    *,
    start: datetime,
    end: datetime,
    batch_rows: int = BATCH_ROWS,
    record: bool = True,
) -> ViewWrite:
    """Write the latest row per customer of `view` in [start, end] to the online store, batch by
    batch, then (`record`) record [start, end] as materialized in the registry."""
    from feast.utils import _convert_arrow_to_proto

    source = view.batch_source
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    write = _sqlite_writer(store, view)
    if write is None:
        provider = store._get_provider()

        def write(rows: list[Any]) -> None:
            provider.online_write_batch(store.config, view, rows, None)

    rows = batches = 0
    for batch in latest_batches(
        Path(source.path),
        keys=list(join_keys),
        timestamp=source.timestamp_field,
        columns=[f.name for f in view.features],
        created=source.created_timestamp_column or None,
        start=start,
        end=end,
        batch_rows=batch_rows,
    ):
        if batch.num_rows == 0:
            continue
        write(_convert_arrow_to_proto(batch, view, join_keys))
        rows += batch.num_rows
        batches += 1
    if record:
        store.registry.apply_materialization(view, store.project, start, end)
    return ViewWrite(rows=rows, batches=batches)

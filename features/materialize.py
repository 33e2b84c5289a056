"""Materialization at scale: one feature view into the online store in bounded batches.

Feast's own `materialize` loads a view's latest rows whole, turns every value into a protobuf at once
and, on SQLite, writes one `execute` per feature value: memory grows with the customers. Here the
latest row per customer is streamed from the feature table by DuckDB in record batches, and each
batch is encoded column by column (doubles, int64 and strings without a protobuf object per value;
the bytes are what Feast's conversion gives, which the tests check byte for byte): on SQLite written
in one `executemany`, on Redis as one HSET per customer in one pipeline per batch. Any other store
gets Feast's conversion and its own batch write. The view's materialized interval is then recorded in the registry, as
`FeatureStore.materialize` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

# Customers per batch: large enough that per-statement overhead vanishes, small enough that a batch's
# protobufs (about 40 values a customer) stay in the tens of MB.
BATCH_ROWS = 20_000
# SQLite page cache of the writing connection: the B-tree of a million customers' rows stays hot.
SQLITE_CACHE_MB = 256
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
    Feast's offline store selects it, in record batches of at most `batch_rows`, ordered by the keys."""
    order = f'"{timestamp}" DESC' + (f', "{created}" DESC' if created else "")
    wanted = [*keys, *columns, timestamp, *([created] if created else [])]
    partition = ", ".join(f'"{k}"' for k in keys)
    select = ", ".join(f'"{c}"' for c in dict.fromkeys(wanted))
    query = (
        f"SELECT {select} FROM read_parquet(?) "
        f'WHERE "{timestamp}" >= ? AND "{timestamp}" <= ? '
        f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order}) = 1 "
        # In key order across batches: SQLite's online table (primary key entity_key, feature_name) then
        # grows at its right edge instead of taking inserts all over a B-tree larger than its cache.
        f"ORDER BY {partition}"
    )
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        yield from con.sql(query, params=[str(path), start, end]).to_arrow_reader(batch_rows)


def spark_latest_batches(
    store: FeatureStore,
    view: FeatureView,
    *,
    start: datetime,
    end: datetime,
    staging: Path,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """`latest_batches` through Feast's Spark offline store (`offline_store: type: spark`): its query for
    the latest row per entity in [start, end], written by Spark to parquet parts under `staging` (the
    driver never holds the whole view; on a cluster, a folder every node sees) and streamed back in
    record batches of at most `batch_rows`. The parts are removed afterwards."""
    import contextlib
    import io
    import shutil
    import uuid
    import warnings

    import pyarrow.dataset as ds
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStore

    source = view.batch_source
    folder = staging / f"{view.name}-{uuid.uuid4().hex}"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # Feast prints and warns "experimental" on every call: noise in the CLI's output
        warnings.simplefilter("ignore", RuntimeWarning)
        job = SparkOfflineStore.pull_latest_from_table_or_query(
            config=store.config,
            data_source=source,
            join_key_columns=[e.name for e in view.entity_columns],
            feature_name_columns=[f.name for f in view.features],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=start,
            end_date=end,
        )
        job.to_spark_df().write.mode("overwrite").parquet(str(folder))
    try:
        yield from ds.dataset(folder, format="parquet").to_batches(batch_size=batch_rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 as protobuf writes it: two's complement, 10 bytes if negative
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_DOUBLE_TAG, _INT64_TAG, _STRING_TAG = (
    b"\x29",
    b"\x20",
    b"\x12",
)  # Value.double_val=5, int64_val=4, string_val=2


def encode_column(array: pa.Array, value_type: Any) -> tuple[list[bytes], list[str | None]]:
    """`(ValueProto.SerializeToString(), value_text)` per row of one feature column, as Feast's
    conversion and SQLite writer produce them (a missing value or NaN: an empty Value and no text).
    Doubles, int64 and strings are encoded here without building a protobuf per value; any other
    type goes through Feast's own conversion."""
    from feast.value_type import ValueType

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if value_type == ValueType.DOUBLE and pa.types.is_float64(kind):
        values = array.to_numpy(zero_copy_only=False)
        valid = ~np.isnan(values)
        blob = np.empty((len(values), 9), dtype=np.uint8)
        blob[:, 0] = _DOUBLE_TAG[0]
        blob[:, 1:] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
        raw = blob.tobytes()
        floats = values.tolist()
        return (
            [raw[9 * i : 9 * i + 9] if ok else b"" for i, ok in enumerate(valid.tolist())],
            [str(x) if ok else None for x, ok in zip(floats, valid.tolist(), strict=True)],
        )
    if value_type == ValueType.INT64 and pa.types.is_integer(kind):
        ints = array.to_pylist()
        cache: dict[int, bytes] = {}
        blobs = []
        for x in ints:
            if x is None:
                blobs.append(b"")
                continue
            encoded = cache.get(x)
            if encoded is None:
                encoded = cache[x] = _INT64_TAG + _varint(x)
            blobs.append(encoded)
        return blobs, [None if x is None else str(x) for x in ints]
    if value_type == ValueType.STRING and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        texts = array.to_pylist()
        blobs = []
        for x in texts:
            if x is None:
                blobs.append(b"")
            else:
                data = x.encode("utf-8")
                blobs.append(_STRING_TAG + _varint(len(data)) + data)
        return blobs, texts
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.utils import _columns_to_proto_values

    name = "__column"
    protos = _columns_to_proto_values(
        pa.record_batch({name: array}), [(name, value_type)], allow_missing=False
    )
    return [v.SerializeToString() for v in protos[name]], [
        extract_text_and_num(v, False)[0] for v in protos[name]
    ]


def _timestamps(array: pa.Array, convert: Callable[[datetime], Any] | None = None) -> list[Any]:
    """Each row's time as Feast's path makes it (utils._convert_arrow_fv_to_proto, then the online
    writers' to_naive_utc), passed through `convert`. Worked out once per distinct time: a batch holds
    a handful (the snapshots), so per row this is a list lookup, not a datetime conversion."""
    from feast.utils import _coerce_datetime, to_naive_utc

    stamps = pd.to_datetime(array.to_numpy(zero_copy_only=False))
    codes, distinct = pd.factorize(stamps, use_na_sentinel=False)  # a null time: as Feast treats it
    done = [to_naive_utc(_coerce_datetime(v)) for v in distinct]
    if convert is not None:
        done = [convert(v) for v in done]
    return [done[c] for c in codes.tolist()]


def _entity_keys(batch: pa.RecordBatch, view: FeatureView, version: int) -> list[bytes]:
    """Feast's serialized entity key of each row (the key both online stores are addressed by).

    One string join key (a customer id), version 3: the bytes of `serialize_entity_key` put together
    here (count, key type, key name, value type, value); other keys go through Feast's function."""
    import struct

    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.utils import _build_entity_keys, _columns_to_proto_values
    from feast.value_type import ValueType

    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    if version >= 3 and list(join_keys.values()) == [ValueType.STRING]:
        (name,) = join_keys
        column = batch.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            encoded = name.encode("utf-8")
            head = struct.pack("<III", 1, ValueType.STRING.value, len(encoded)) + encoded
            head += struct.pack("<I", ValueType.STRING.value)
            pack = struct.Struct("<I").pack
            values = [v.encode("utf-8") for v in column.to_pylist()]
            return [head + pack(len(v)) + v for v in values]
    key_values = _columns_to_proto_values(batch, list(join_keys.items()), allow_missing=False)
    return [
        serialize_entity_key(k, entity_key_serialization_version=version)
        for k in _build_entity_keys(batch.num_rows, join_keys, key_values)
    ]


def _sqlite_writer(store: FeatureStore, view: FeatureView) -> Callable[[pa.RecordBatch], None] | None:
    """A bulk writer into Feast's SQLite table for `view`: the same rows, columns and encodings as
    `SqliteOnlineStore.online_write_batch` after Feast's conversion, in one `executemany` per batch.
    None where that store writes extra columns (vectors, value_num): Feast's own writer then."""
    from feast.infra.online_stores.sqlite import _quote_id, _table_id, adapt_datetime_epoch

    config = store.config
    online = config.online_store
    if getattr(online, "type", "sqlite") != "sqlite":
        return None
    if getattr(online, "vector_enabled", False) or getattr(online, "enable_openai_compatible_store", False):
        return None
    conn = store._get_provider().online_store._get_conn(config)
    table = _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    sql = (
        f"INSERT INTO {_quote_id(table)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts"
    )
    features = [(f.name, f.dtype.to_value_type()) for f in view.features]
    names = sorted(name for name, _ in features)
    source = view.batch_source
    conn.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_MB * 1024}")  # this connection's page cache

    def write(batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        keys = _entity_keys(batch, view, config.entity_key_serialization_version)
        # the epoch seconds Feast's sqlite3 adapter stores for a datetime, worked out per distinct time
        stamps = _timestamps(batch.column(source.timestamp_field), adapt_datetime_epoch)
        created = (
            _timestamps(batch.column(source.created_timestamp_column), adapt_datetime_epoch)
            if source.created_timestamp_column
            else [None] * n
        )
        encoded = {name: encode_column(batch.column(name), value_type) for name, value_type in features}
        # In primary-key order (entity_key, feature_name): SQLite then appends to its B-tree pages
        # instead of inserting at random places, about half the cost.
        order = sorted(range(n), key=keys.__getitem__)
        params = [
            (keys[i], name, encoded[name][0][i], encoded[name][1][i], stamps[i], created[i])
            for i in order
            for name in names
        ]
        with conn:
            conn.executemany(sql, params)

    return write


def _proto_timestamp(moment: datetime) -> tuple[int, bytes]:
    """(nanoseconds since the epoch, `google.protobuf.Timestamp` bytes) as Feast's Redis writer makes
    them from a row's event time (naive = UTC): `Timestamp.FromDatetime` then `SerializeToString`,
    i.e. field 1 `seconds` and field 2 `nanos` as varints, each left out when zero."""
    import calendar

    from feast.utils import make_tzaware

    aware = make_tzaware(moment)
    seconds = calendar.timegm(aware.utctimetuple())
    nanos = aware.microsecond * 1000
    blob = (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(nanos) if nanos else b"")
    return seconds * 1_000_000_000 + nanos, blob


def _timestamp_nanos(blob: bytes) -> int:
    """Nanoseconds since the epoch of a serialized `google.protobuf.Timestamp` (what Redis holds)."""
    fields = {1: 0, 2: 0}
    i = 0
    while i < len(blob):
        tag = blob[i]
        i += 1
        value = shift = 0
        while True:
            byte = blob[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        fields[tag >> 3] = value - (1 << 64) if value >= 1 << 63 else value  # int64 two's complement
    return fields[1] * 1_000_000_000 + fields[2]


def _redis_writer(store: FeatureStore, view: FeatureView) -> Callable[[pa.RecordBatch], None] | None:
    """A bulk writer into Feast's Redis layout for `view`: the hashes `RedisOnlineStore.online_write_batch`
    writes (key: entity key + project; fields: `_ts:<view>` and murmur3 of `<view>:<feature>`), with the
    same rule for rows already there (an older or equal event time is not overwritten, unless
    `skip_dedup`), but values encoded column by column and one pipeline (no transaction) per batch
    instead of a protobuf object per value. None for other stores."""
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import _versioned_fv_name

    config = store.config
    online = config.online_store
    if getattr(online, "type", "") != "redis":
        return None
    client = store._get_provider().online_store._get_client(online)
    project = config.project.encode("utf-8")
    view_name = _versioned_fv_name(view, config)
    ts_field = f"_ts:{view_name}".encode()
    features = [(f.name, f.dtype.to_value_type()) for f in view.features]
    fields = [_mmh3(f"{view_name}:{name}") for name, _ in features]
    timestamp = view.batch_source.timestamp_field
    ttl = online.key_ttl_seconds

    def write(batch: pa.RecordBatch) -> None:
        keys = [k + project for k in _entity_keys(batch, view, config.entity_key_serialization_version)]
        stamps = _timestamps(batch.column(timestamp), _proto_timestamp)
        nanos = [n for n, _ in stamps]
        blobs = [b for _, b in stamps]
        values = [encode_column(batch.column(name), value_type)[0] for name, value_type in features]
        keep = range(len(keys))
        if not online.skip_dedup:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, ts_field)
                previous = pipe.execute()
            keep = [i for i, old in enumerate(previous) if old is None or _timestamp_nanos(old) < nanos[i]]
        with client.pipeline(transaction=False) as pipe:
            for i in keep:
                # field, value pairs flat: HSET without building a mapping per row
                pairs = [ts_field, blobs[i]]
                for field_key, column in zip(fields, values, strict=True):
                    pairs += (field_key, column[i])
                pipe.execute_command("HSET", keys[i], *pairs)
                if ttl:
                    pipe.expire(keys[i], ttl)
            pipe.execute()

    return write


def write_view(
    store: FeatureStore,
    view: FeatureView,
    *,
    start: datetime,
    end: datetime,
    batch_rows: int = BATCH_ROWS,
    record: bool = True,
    staging: Path | None = None,
) -> ViewWrite:
    """Write the latest row per customer of `view` in [start, end] to the online store, batch by
    batch, then (`record`) record [start, end] as materialized in the registry. The latest rows are
    read by the store's offline store: DuckDB over the parquet file, or Feast's Spark offline store
    (its results staged as parquet under `staging`)."""
    from feast.utils import _convert_arrow_to_proto

    source = view.batch_source
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    write = _sqlite_writer(store, view) or _redis_writer(store, view)
    if write is None:
        provider = store._get_provider()

        def write(batch: pa.RecordBatch) -> None:
            rows = _convert_arrow_to_proto(batch, view, join_keys)
            provider.online_write_batch(store.config, view, rows, None)

    if getattr(store.config.offline_store, "type", "") == "spark":
        if staging is None:
            raise ValueError("the Spark offline store needs a staging folder for materialization")
        batches_in = spark_latest_batches(
            store, view, start=start, end=end, staging=staging, batch_rows=batch_rows
        )
    else:
        batches_in = latest_batches(
            Path(source.path),
            keys=list(join_keys),
            timestamp=source.timestamp_field,
            columns=[f.name for f in view.features],
            created=source.created_timestamp_column or None,
            start=start,
            end=end,
            batch_rows=batch_rows,
        )
    rows = batches = 0
    for batch in batches_in:
        if batch.num_rows == 0:
            continue
        write(batch)
        rows += batch.num_rows
        batches += 1
    if record:
        store.registry.apply_materialization(view, store.project, start, end)
    return ViewWrite(rows=rows, batches=batches)

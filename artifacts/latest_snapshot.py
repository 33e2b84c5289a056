"""The latest feature snapshot, one chunk of customers at a time.

A feature table holds every snapshot (about 19 for two years of monthly snapshots), so reading a table
whole to keep its latest rows holds 19 times the customers; `persona score --all` and `persona tags fit`
need only the latest rows, and only a chunk of them at once. `latest_feature_chunks` reads the
transactions table's latest rows in file order, `chunk_size` at a time, and joins each chunk to the other
tables' rows of the same customers: memory holds one chunk, plus the customer ids of the snapshot.

The chunks put together are what reading every table whole, keeping the latest snapshot and left-joining
on customer_id gives, dtypes included (pandas makes an integer column float when a value is missing
anywhere in the file, or when a customer has no row in a joined table: decided here for the whole
snapshot, not per chunk).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import SourceError

ENTITY = ("customer_id", "event_timestamp")
_BOOKKEEPING = ("created",)  # when a row was built: not a feature


@dataclass(frozen=True)
class _Table:
    path: Path
    file: pq.ParquetFile
    columns: list[str]  # read from the file, in file order

    def row_groups_at(self, snapshot: pa.Scalar) -> list[int]:
        """Row groups that may hold `snapshot` (statistics prune the others: rows are by snapshot)."""
        meta = self.file.metadata
        j = self.file.schema_arrow.get_field_index("event_timestamp")
        keep = []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            try:
                low, high = pa.scalar(stats.min, snapshot.type), pa.scalar(stats.max, snapshot.type)
                outside = pc.less(snapshot, low).as_py() or pc.greater(snapshot, high).as_py()
            except (AttributeError, TypeError, ValueError, pa.ArrowException):  # no usable statistics
                outside = False
            if not outside:
                keep.append(i)
        return keep

    def batches_at(self, snapshot: pa.Scalar, columns: Sequence[str], *, rows: int) -> Iterator[pa.Table]:
        """The table's rows at `snapshot` (only `columns`), in file order, a record batch at a time."""
        snapshot = snapshot.cast(self.file.schema_arrow.field("event_timestamp").type)
        groups = self.row_groups_at(snapshot)
        if not groups:
            return
        wanted = list(dict.fromkeys([*columns, "event_timestamp"]))
        for batch in self.file.iter_batches(batch_size=rows, row_groups=groups, columns=wanted):
            kept = batch.filter(pc.equal(batch.column("event_timestamp"), snapshot))
            if kept.num_rows:
                # the file's pandas metadata stays (it decides dtypes); an index it names for the whole
                # file does not fit these rows, and pyarrow then leaves the default index
                yield pa.Table.from_batches([kept]).select(list(columns))

    def has_nulls(self, column: str) -> bool:
        """Whether `column` has a missing value anywhere in the file (what makes pandas read an integer
        column of the whole file as float)."""
        meta = self.file.metadata
        j = self.file.schema_arrow.get_field_index(column)
        counts = [meta.row_group(i).column(j).statistics for i in range(meta.num_row_groups)]
        if all(s is not None and s.has_null_count for s in counts):
            return any(s.null_count > 0 for s in counts)
        return any(b.column(0).null_count for b in self.file.iter_batches(columns=[column]))


def _open(path: Path, wanted: set[str] | None) -> _Table:
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    if "customer_id" not in names or "event_timestamp" not in names:
        raise SourceError(f"{path}: needs columns customer_id and event_timestamp")
    columns = [
        c
        for c in names
        if c not in _BOOKKEEPING
        and not c.startswith("__index_level_")  # a pandas index written as a column: not a feature
        and (wanted is None or c in wanted or c in ENTITY)
    ]
    return _Table(path, file, columns)


def _latest(table: _Table) -> pa.Scalar | None:
    """The table's latest event_timestamp (None when it has none)."""
    column = table.file.schema_arrow.field("event_timestamp")
    latest = None
    for batch in table.file.iter_batches(columns=["event_timestamp"], batch_size=1 << 20):
        top = pc.max(batch.column(0))
        if top.is_valid and (latest is None or pc.greater(top, latest).as_py()):
            latest = top
    return None if latest is None else latest.cast(column.type)


def _float_where_missing(table: _Table, columns: list[str], *, unmatched: bool) -> dict[str, str]:
    """The numpy integer (boolean) columns pandas turns into float (object) columns in the whole frame:
    when a value is missing anywhere in the file, or a customer has no row in a joined table."""
    dtypes = _empty(table, columns).to_pandas().dtypes
    out = {}
    for c in columns:
        numpy_kind = dtypes[c].kind if isinstance(dtypes[c], np.dtype) else None
        if numpy_kind in ("i", "u", "b") and (unmatched or table.has_nulls(c)):
            out[c] = "object" if numpy_kind == "b" else "float64"
    return out


def latest_feature_chunks(
    folder: Path, tables: Sequence[str], *, chunk_size: int, columns: Iterable[str] | None = None
) -> Iterator[pd.DataFrame]:
    """The latest snapshot of every feature table in `folder`, joined on customer_id, `chunk_size`
    customers at a time (the first of `tables` is required and gives the snapshot and the row order;
    the others are left-joined when present). `columns` limits the features read (customer_id and
    event_timestamp always come)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    wanted = None if columns is None else set(columns)
    first = folder / f"{tables[0]}.parquet"
    if not first.is_file():
        raise SourceError(f"no feature table at {first}", hint="run `persona features build` first")
    left = _open(first, wanted)
    others = [
        _open(folder / f"{t}.parquet", wanted) for t in tables[1:] if (folder / f"{t}.parquet").is_file()
    ]
    # a joined table adds its features, not its entity columns (the transactions table's snapshot wins)
    others = [t for t in others if any(c not in ENTITY for c in t.columns)]
    snapshot = _latest(left)
    if snapshot is None:  # no rows: one empty chunk, with the columns and dtypes of the tables
        yield _joined(_empty(left, left.columns), others, None, {})
        return
    ids = pa.chunked_array(
        [b.column("customer_id") for b in left.batches_at(snapshot, ["customer_id"], rows=1 << 20)],
        type=left.file.schema_arrow.field("customer_id").type,
    )
    # dtypes of the whole frame, decided once: a feature column pandas makes float in it
    as_float = _float_where_missing(left, left.columns, unmatched=False)
    for table in others:
        held = pa.chunked_array(
            [b.column("customer_id") for b in table.batches_at(snapshot, ["customer_id"], rows=1 << 20)],
            type=table.file.schema_arrow.field("customer_id").type,
        )
        unmatched = not pc.all(pc.is_in(ids, value_set=held.combine_chunks())).as_py() if len(ids) else False
        features = [c for c in table.columns if c not in ENTITY]
        for c in _float_where_missing(table, features, unmatched=unmatched):
            as_float[c] = (
                "object" if pa.types.is_boolean(table.file.schema_arrow.field(c).type) else "float64"
            )
    del ids

    pending: list[pa.Table] = []
    held_rows = 0
    yielded = False
    for part in left.batches_at(snapshot, left.columns, rows=min(chunk_size, 1 << 16)):
        pending.append(part)
        held_rows += part.num_rows
        while held_rows >= chunk_size:
            whole = pa.concat_tables(pending)
            yielded = True
            yield _joined(whole.slice(0, chunk_size), others, snapshot, as_float)
            rest = whole.slice(chunk_size)
            pending, held_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if held_rows:
        yield _joined(pa.concat_tables(pending), others, snapshot, as_float)
    elif not yielded:
        yield _joined(_empty(left, left.columns), others, snapshot, as_float)


def _empty(table: _Table, columns: list[str]) -> pa.Table:
    schema = table.file.schema_arrow
    empty = pa.table({c: pa.array([], type=schema.field(c).type) for c in columns})
    return empty.replace_schema_metadata(schema.metadata)


def _joined(
    chunk: pa.Table, others: list[_Table], snapshot: pa.Scalar | None, as_float: dict[str, str]
) -> pd.DataFrame:
    """One chunk of the transactions table's rows with the other tables' rows of its customers."""
    frame = chunk.to_pandas()
    ids = chunk.column("customer_id").combine_chunks()
    for table in others:
        features = [c for c in table.columns if c != "event_timestamp"]
        parts = (
            []
            if snapshot is None or not len(ids)
            else [
                part.filter(pc.is_in(part.column("customer_id"), value_set=ids))
                for part in table.batches_at(snapshot, features, rows=1 << 16)
            ]
        )
        right = pa.concat_tables(parts) if parts else _empty(table, features)
        frame = frame.merge(right.to_pandas(), on="customer_id", how="left")
    cast = {c: t for c, t in as_float.items() if c in frame.columns and frame[c].dtype != t}
    return frame.astype(cast) if cast else frame

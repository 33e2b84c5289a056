"""A large source (the events: about 57 rows per person) typed and validated chunk by chunk, never whole.

The checks are those of the whole-table path (`features.schemas`), with the same rows, columns, rules
and values in the quarantine; only what spans the whole table is done apart:
1. `stage` reads the source chunk by chunk, types each chunk (parse failures to the quarantine) and
   writes the raw text and typed values, with each row's position in the source, to a Parquet file.
2. On that file an embedded DuckDB (out of core) finds what needs every row: exact duplicate rows
   (the first is kept, the others removed and counted) and repeated ids (`duplicate_id`: the first
   holder is kept), so neither needs the table in memory.
3. `StagedSource.validated_chunks` reads the file back chunk by chunk and validates each with the
   source's pandera schema (less the uniqueness check done in 2) against the run's `as_of`.
Memory is then one chunk plus a few numbers per row (timestamps for deriving `as_of`).

`Spool` takes the kept rows back to Parquet chunk by chunk, and DuckDB writes the clean table from there
(`SpooledTable`), so the largest tables never sit whole in memory. The staging is DuckDB's whatever
`engine` says: it is the run's own scratch work on local files, not a computation to distribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.normalize import TS_DTYPE
from features.quarantine import Quarantine
from features.readers import CHUNK_ROWS, RawTable
from features.schemas import ParseTally, check_parsed, type_columns, validate

ROW = "_row"  # the row's 0-based position in the source
RAW, TYPED = "raw:", "typed:"  # prefixes of the staged columns
# DuckDB's memory for the staged tables before it spills to the work folder: the sorts and joins of
# tens of millions of rows then cost disk, not the run's peak memory.
STAGING_MEMORY = "1GB"
ROW_GROUP_ROWS = 1024 * 1024  # pyarrow's default row group (the size a whole-table write gives)


def connect(folder: Path) -> duckdb.DuckDBPyConnection:
    """An embedded DuckDB for the staged files of `folder` (spills there beyond `STAGING_MEMORY`)."""
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{(folder / 'duckdb.tmp').as_posix()}'")
    con.execute(f"SET memory_limit = '{STAGING_MEMORY}'")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    return con


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Staged columns back with the dtypes the typing step gives (text arrow-backed, flags nullable)."""
    mapping = {
        pa.string(): pd.StringDtype("pyarrow"),
        pa.large_string(): pd.StringDtype("pyarrow"),
        pa.bool_(): pd.BooleanDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """`np.isin(values, sorted_set)` for a sorted set: a binary search per value. `np.isin` sorts the
    set with the values on every call, and the duplicates and rejected rows of a source of tens of
    millions of rows are checked once per chunk."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_set, values).clip(max=len(sorted_set) - 1)
    return sorted_set[at] == values


@dataclass
class StagedSource:
    """A source typed and staged by `stage`: its rows, duplicates and rows already quarantined."""

    source: str
    kind_key: str
    path: Path
    columns: list[str]  # Persona names, as read
    rows: int  # data rows read
    duplicates: np.ndarray  # sorted 0-based rows removed as exact copies of an earlier row
    rejected: np.ndarray = field(default_factory=lambda: np.array([], dtype="int64"))  # quarantined

    def _query(self, sql: str) -> pa.Table:
        con = connect(self.path.parent)
        try:
            con.register("dups", pa.table({ROW: pa.array(self.duplicates, pa.int64())}))
            staged = f"read_parquet('{self.path.as_posix()}')"
            return con.sql(sql.replace("{staged}", staged)).to_arrow_table()
        finally:
            con.close()

    def column(self, name: str) -> pd.Series:
        """A typed column of the rows that are not duplicates, in source order (e.g. timestamps for
        deriving `as_of`)."""
        table = self._query(f'SELECT "{TYPED}{name}" AS v FROM {{staged}} ANTI JOIN dups USING ({ROW})')
        values = _to_pandas(table)["v"]
        return values.astype(TS_DTYPE) if pd.api.types.is_datetime64_any_dtype(values.dtype) else values

    def earliest(self, name: str) -> pd.Series:
        """The earliest value of a typed timestamp column (one value, or none): all `check_as_of` needs."""
        table = self._query(f'SELECT min("{TYPED}{name}") AS v FROM {{staged}} ANTI JOIN dups USING ({ROW})')
        return _to_pandas(table)["v"].dropna().astype(TS_DTYPE)

    def repeated(self, name: str) -> tuple[np.ndarray, pd.Series]:
        """Rows (not duplicates) whose typed `name` an earlier such row holds too (nulls never repeat),
        and their raw values: pandera's `unique` with `report_duplicates="exclude_first"`."""
        table = self._query(
            f'SELECT {ROW}, "{RAW}{name}" AS v FROM {{staged}} ANTI JOIN dups USING ({ROW}) '
            f'WHERE "{TYPED}{name}" IS NOT NULL '
            f'QUALIFY row_number() OVER (PARTITION BY "{TYPED}{name}" ORDER BY {ROW}) > 1 ORDER BY {ROW}'
        )
        frame = _to_pandas(table)
        rows = frame[ROW].to_numpy(dtype="int64")
        return rows, pd.Series(frame["v"].array, index=pd.Index(rows))

    def validated_chunks(
        self, schema, *, quarantine: Quarantine, rows: int | None = None
    ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """(typed rows that passed, the raw text of every row but duplicates) chunk by chunk, indexed by
        the rows' positions.

        `schema` is the source's pandera schema; its uniqueness checks are left out here (found on the
        whole staged table: `repeated`), so quarantine those rows (`rejected`) before calling."""
        unique = [n for n, c in schema.columns.items() if c.unique]
        if unique:
            schema = schema.update_columns({n: {"unique": False} for n in unique})
        if not self.path.is_file():
            return
        parquet = pq.ParquetFile(self.path)
        typed_names = [f"{TYPED}{c}" for c in self.columns]
        raw_names = [f"{RAW}{c}" for c in self.columns]
        batches = (
            (pa.Table.from_batches([b]) for b in parquet.iter_batches(batch_size=rows or CHUNK_ROWS))
            if parquet.metadata.num_rows
            else [parquet.schema_arrow.empty_table()]  # no rows: one empty chunk, as the source had
        )
        for batch in batches:
            frame = _to_pandas(batch)
            positions = frame[ROW].to_numpy(dtype="int64")
            keep = ~_member(positions, self.duplicates)
            index = pd.Index(positions[keep])
            typed = frame.loc[keep, typed_names].set_axis(self.columns, axis=1).set_axis(index, axis=0)
            raw = frame.loc[keep, raw_names].set_axis(self.columns, axis=1).set_axis(index, axis=0)
            del frame
            chunk_quarantine = Quarantine()
            validate(typed, schema, raw=raw, quarantine=chunk_quarantine, source=self.source)
            quarantine.parts.extend(chunk_quarantine.parts)
            positions = index.to_numpy()
            passed = ~(
                _member(positions, chunk_quarantine.rows(self.source)) | _member(positions, self.rejected)
            )
            yield typed[passed], raw


def stage(
    table: RawTable,
    *,
    kind_key: str,
    folder: Path,
    timezone: str,
    date_format: str | None,
    quarantine: Quarantine,
    rows: int | None = None,
    step: Callable[[str], None] | None = None,
) -> StagedSource:
    """Type `table` chunk by chunk into `folder` (see the module doc); parse failures of rows that are
    not duplicates go to `quarantine`. Raises SourceError for a column in which nothing parses."""
    source = table.source
    path = folder / f"{source}.staged.parquet"
    parsed = Quarantine()  # parse failures, kept apart until the duplicates are known
    tallies: dict[str, ParseTally] = {}
    writer: pq.ParquetWriter | None = None
    columns: list[str] = []
    read = 0
    try:
        for chunk in table.chunks(rows or CHUNK_ROWS):
            columns = list(chunk.columns)
            typed = type_columns(
                kind_key,
                chunk,
                timezone=timezone,
                date_format=date_format,
                quarantine=parsed,
                source=source,
                location=table.location,
                tallies=tallies,
            )
            staged = pd.DataFrame(
                {
                    ROW: chunk.index.to_numpy(dtype="int64"),
                    **{f"{RAW}{c}": chunk[c].astype("string[pyarrow]").array for c in columns},
                    **{f"{TYPED}{c}": typed[c].array for c in columns},
                }
            )
            arrow = pa.Table.from_pandas(staged, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, arrow.schema)
            writer.write_table(arrow.cast(writer.schema))
            read += len(chunk)
            if step is not None:
                step(f"staging {source}: {read:,} rows")
    finally:
        if writer is not None:
            writer.close()
    result = StagedSource(source, kind_key, path, columns, read, np.array([], dtype="int64"))
    if read:
        keys = ", ".join(f'"{RAW}{c}"' for c in columns)
        dups = result._query(
            f"SELECT {ROW} FROM {{staged}} "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {ROW}) > 1 ORDER BY {ROW}"
        )
        result.duplicates = dups.column(ROW).to_numpy().astype("int64")
    check_parsed(tallies, kind_key=kind_key, source=source, location=table.location)
    for part in parsed.parts:  # a duplicate's failure is its original's: reported once
        kept = part[~np.isin(part["row"].to_numpy() - 1, result.duplicates)]
        if len(kept):
            quarantine.parts.append(kept.reset_index(drop=True))
    result.rejected = np.unique(
        np.concatenate([p["row"].to_numpy() - 1 for p in parsed.parts] or [np.array([], dtype="int64")])
    )
    return result


@dataclass
class SpooledTable:
    """A clean table written to Parquet by DuckDB (`Spool.write`) instead of held in memory."""

    path: Path
    rows: int

    def __len__(self) -> int:
        return self.rows

    def to_pandas(self) -> pd.DataFrame:
        return pq.read_table(self.path).to_pandas()


class Spool:
    """Rows appended chunk by chunk to a Parquet file, then queried out of core by DuckDB (`{spool}` in
    the SQL names the file; other tables are passed by name as Arrow)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def append(self, frame: pd.DataFrame) -> None:
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, arrow.schema)
        self._writer.write_table(arrow.cast(self._writer.schema))
        self.rows += len(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _run(self, con: duckdb.DuckDBPyConnection, sql: str, tables: dict[str, pa.Table]):
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql.replace("{spool}", f"read_parquet('{self.path.as_posix()}')"))

    def query(self, sql: str, **tables: pa.Table) -> pa.Table:
        """A small result (e.g. one row per distinct key) as Arrow."""
        con = connect(self.path.parent)
        try:
            return self._run(con, sql, tables).to_arrow_table()
        finally:
            con.close()

    def write(self, sql: str, *, path: Path, schema: pa.Schema, **tables: pa.Table) -> SpooledTable:
        """The result of `sql` streamed to a Parquet file with `schema`: never whole in memory."""
        return write_parts(path, schema=schema, parts=[(self, sql, tables)])


def write_parts(
    path: Path, *, schema: pa.Schema, parts: list[pa.Table | tuple[Spool, str, dict[str, pa.Table]]]
) -> SpooledTable:
    """One Parquet file with `schema` of `parts` in turn: Arrow tables, and spool queries (spool, SQL,
    tables it names) streamed in batches, in row groups of about `ROW_GROUP_ROWS`."""
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for part in parts:
            if isinstance(part, pa.Table):
                writer.write_table(part.cast(schema))
                rows += part.num_rows
                continue
            spool, sql, tables = part
            con = connect(spool.path.parent)
            try:
                reader = spool._run(con, sql, tables).to_arrow_reader(batch_size=CHUNK_ROWS)
                pending: list[pa.RecordBatch] = []
                for batch in reader:
                    pending.append(batch)
                    rows += batch.num_rows
                    if sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(pending).cast(schema))
                        pending = []
                if pending:
                    writer.write_table(pa.Table.from_batches(pending).cast(schema))
            finally:
                con.close()
    return SpooledTable(path, rows)

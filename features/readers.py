"""Read one raw source (CSV / Parquet file, plain or gzipped, or a SQL table) into Persona's column names.

Only the columns Persona needs are read, text columns as arrow-backed strings so the raw value of any
rejected row can still be shown. A missing file, table or required column stops the run with a
`SourceError` that names the source, where it was looked for and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from configs.sections.sources import WHITESPACE, SourceConfig, known_columns
from configs.settings import Settings
from core.errors import SourceError

CHUNK_ROWS = 200_000  # rows per chunk of a source typed and validated chunk by chunk
CSV_BLOCK_BYTES = 16 << 20  # Arrow's CSV block: a lazily read CSV file comes in chunks of this size


@dataclass
class RawTable:
    """A source as read: `frame` has Persona column names and a 0-based index (row = index + 1).

    A source read lazily (`read_source(..., lazy=True)`) has no `frame` but `batches`, which reads the
    source again from its start on each call, yielding frames of Persona columns in the source's order.
    """

    source: str
    location: str
    frame: pd.DataFrame | None
    missing_optional: list[str] = field(default_factory=list)
    batches: Callable[[], Iterator[pd.DataFrame]] | None = None

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        """The source in chunks, each indexed by the 0-based position of its rows in the source; at
        least one chunk (an empty one for a source without rows)."""
        if self.frame is not None:
            for start in range(0, max(len(self.frame), 1), rows):
                yield self.frame.iloc[start : start + rows]
            return
        assert self.batches is not None
        offset = 0
        for batch in self.batches():
            batch.index = pd.RangeIndex(offset, offset + len(batch))
            offset += len(batch)
            yield batch


def _format(cfg: SourceConfig, location: str) -> str:
    if cfg.format != "auto":
        return cfg.format
    if cfg.url:
        return "sql"
    name = location.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def _csv_header(path: Path, sep: str) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    if not first.strip():
        return []
    if sep == WHITESPACE:
        return first.split()
    return next(csv.reader(io.StringIO(first), delimiter=sep))


def _wanted(source: str, cfg: SourceConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(required, optional) Persona name -> source column; unmapped names default to themselves."""
    required, optional = known_columns(source, cfg.layout)
    names = {**{n: n for n in (*required, *optional)}, **{k: v for k, v in cfg.columns.items()}}
    req = {n: names[n] for n in required if names[n]}
    missing_mapping = [n for n in required if not names[n]]
    if missing_mapping:
        raise SourceError(f"source '{source}': required column(s) {missing_mapping} are mapped to null")
    return req, {n: names[n] for n in optional if names[n]}


def _pick_columns(
    source: str, location: str, available: list[str], cfg: SourceConfig
) -> tuple[dict[str, str], list[str]]:
    required, optional = _wanted(source, cfg)
    missing = [(n, c) for n, c in required.items() if c not in available]
    if missing:
        named = ", ".join(f"'{c}'" + (f" (for {n})" if n != c else "") for n, c in missing)
        raise SourceError(
            f"source '{source}' ({location}): required column {named} is missing; "
            f"found: {', '.join(available) or 'no columns'}",
            hint=f"map it in sources.{source}.columns (Persona name: your column name)",
        )
    use = dict(required)
    absent: list[str] = []
    for name, column in optional.items():
        if column in available:
            use[name] = column
        elif cfg.columns.get(name) not in (None, name):
            # Renamed in the config, so meant to be there: a typo must not silently drop the column.
            # (A name mapped to itself is the default: base.yaml's demo mapping says so of every column.)
            raise SourceError(
                f"source '{source}' ({location}): column '{column}' (sources.{source}.columns.{name}) "
                f"not found; found: {', '.join(available) or 'no columns'}",
                hint=f"fix sources.{source}.columns.{name}, or map it to null if the source has none",
            )
        else:
            absent.append(name)
    return use, absent


def _strings(table) -> pd.DataFrame:  # pyarrow.Table -> pandas, text as arrow-backed strings
    mapping = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    return table.to_pandas(types_mapper=mapping.get)


def _mapped(raw: pd.DataFrame, use: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: raw[column] for name, column in use.items()})


def _csv_options(cfg: SourceConfig, columns: list[str]) -> dict:
    from pyarrow import csv as pacsv

    return {
        "read_options": pacsv.ReadOptions(use_threads=True, block_size=CSV_BLOCK_BYTES),
        "parse_options": pacsv.ParseOptions(delimiter=cfg.csv_sep),
        "convert_options": pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    }


def _read_csv(source: str, path: Path, cfg: SourceConfig, *, lazy: bool = False) -> RawTable:
    from pyarrow import csv as pacsv

    header = _csv_header(path, cfg.csv_sep)
    use, absent = _pick_columns(source, str(path), header, cfg)
    columns = list(dict.fromkeys(use.values()))
    if cfg.csv_sep == WHITESPACE:  # read whole: Arrow's streaming reader takes one delimiter only
        return RawTable(source, str(path), _read_blank_separated(source, path, use, columns), absent)
    failed = f"source '{source}' ({path}): cannot parse the CSV file"
    if lazy:

        def batches() -> Iterator[pd.DataFrame]:
            empty = True
            try:
                # the types are given, so Arrow's streaming reader parses block by block like read_csv
                with pacsv.open_csv(path, **_csv_options(cfg, columns)) as reader:
                    for batch in reader:
                        empty = False
                        yield _mapped(_strings(pa.Table.from_batches([batch])), use)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(f"{failed}: {exc}") from None
            if empty:
                yield pd.DataFrame({name: pd.Series(dtype="string[pyarrow]") for name in use})

        return RawTable(source, str(path), None, absent, batches=batches)
    try:
        table = pacsv.read_csv(path, **_csv_options(cfg, columns))
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{failed}: {exc}") from None
    return RawTable(source, str(path), _mapped(_strings(table), use).reset_index(drop=True), absent)


def _read_blank_separated(source: str, path: Path, use: dict[str, str], columns: list[str]) -> pd.DataFrame:
    """Columns separated by runs of blanks (pandas' C parser; Arrow's reader takes one delimiter only)."""
    try:
        raw = pd.read_csv(
            path,
            sep=r"\s+",
            usecols=columns,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            compression="infer",
        )
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as exc:
        raise SourceError(f"source '{source}' ({path}): cannot parse the text file: {exc}") from None
    return pd.DataFrame({name: raw[column].astype("string[pyarrow]") for name, column in use.items()})


def _read_parquet(source: str, path: Path, cfg: SourceConfig, *, lazy: bool = False) -> RawTable:
    failed = f"source '{source}' ({path}): cannot read the Parquet file"
    try:
        # A gzipped Parquet file is unusual but happens (exports compressed as a whole): unzip in memory.
        handle = io.BytesIO(gzip.decompress(path.read_bytes())) if path.suffix == ".gz" else path
        available = pq.read_schema(handle).names
        use, absent = _pick_columns(source, str(path), available, cfg)
        columns = list(dict.fromkeys(use.values()))
        if not lazy:
            table = pq.read_table(handle, columns=columns)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise SourceError(f"{failed}: {exc}") from None
    if not lazy:
        return RawTable(source, str(path), _mapped(_strings(table), use).reset_index(drop=True), absent)

    def batches() -> Iterator[pd.DataFrame]:
        empty = True
        try:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                empty = False
                yield _mapped(_strings(pa.Table.from_batches([batch])), use)
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            raise SourceError(f"{failed}: {exc}") from None
        if empty:
            yield pd.DataFrame({name: pd.Series(dtype="string[pyarrow]") for name in use})

    return RawTable(source, str(path), None, absent, batches=batches)


def _since_clause(column: sa.ColumnClause, kind: sa.types.TypeEngine, since: pd.Timestamp, cfg: SourceConfig):  # type: ignore[no-untyped-def]
    """`column >= a day before since OR column IS NULL`, or None when the database cannot compare it.

    A day of margin covers the time zone of values written without one; the exact cut is made after
    parsing. Text compares as text, so only ISO 8601 text (no `date_format`) is filtered here."""
    bound = since.tz_convert("UTC") - pd.Timedelta(days=1)
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return None
    from datetime import date, datetime

    if issubclass(python_type, datetime | date):
        value: object = bound.tz_localize(None).to_pydatetime()
    elif issubclass(python_type, str) and cfg.date_format is None:
        value = bound.date().isoformat()
    else:
        return None
    return sa.or_(column >= value, column.is_(None))


def _read_sql(
    source: str, url: str, cfg: SourceConfig, since: tuple[str, pd.Timestamp] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    where = f"{parsed.render_as_string(hide_password=True)} table {cfg.table}"
    # SQLite would silently create an empty database file: a missing file is a missing source.
    local_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if local_file and not Path(str(parsed.database)).is_file():
        raise SourceError(f"source '{source}': database file not found: {parsed.database}")
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        schema, _, table_name = (cfg.table or "").rpartition(".")
        if not inspector.has_table(table_name, schema=schema or None):
            raise SourceError(f"source '{source}' ({where}): table '{cfg.table}' not found")
        described = inspector.get_columns(table_name, schema=schema or None)
        available = [c["name"] for c in described]
        use, absent = _pick_columns(source, where, available, cfg)
        table = sa.table(
            table_name, *[sa.column(c) for c in dict.fromkeys(use.values())], schema=schema or None
        )
        query = sa.select(table)
        if since is not None and since[0] in use:
            kinds = {c["name"]: c["type"] for c in described}
            clause = _since_clause(table.c[use[since[0]]], kinds[use[since[0]]], since[1], cfg)
            if clause is not None:
                query = query.where(clause)
        with engine.connect() as conn:
            raw = pd.read_sql_query(query, conn)
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(
            f"source '{source}' ({where}): cannot read: {exc.__class__.__name__}: {exc}"
        ) from None
    finally:
        engine.dispose()
    frame = pd.DataFrame({name: raw[column] for name, column in use.items()})
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].astype("string[pyarrow]")
    return frame, absent


def read_source(source: str, cfg: SourceConfig, *, settings: Settings, lazy: bool = False) -> RawTable:
    """Read a configured source with its column mapping applied. Raises SourceError when it cannot.

    `lazy`: a CSV or Parquet file is checked (columns) but not read; its `RawTable.chunks` read it
    chunk by chunk (a SQL table or blank-separated text is read whole all the same)."""
    if cfg.url:
        location = settings.url(cfg.url)
        frame, absent = _read_sql(source, location, cfg)
        return RawTable(source, f"{location} table {cfg.table}", frame.reset_index(drop=True), absent)
    if not cfg.path:
        raise SourceError(f"source '{source}' is not configured (give sources.{source}.path or url)")
    path = settings.path(cfg.path)
    if not path.is_file():
        raise SourceError(
            f"source '{source}': file not found: {path}",
            hint=f"fix sources.{source}.path"
            + ("" if source == "orders" else f", or set sources.{source}: null"),
        )
    kind = _format(cfg, str(path))
    return (_read_parquet if kind == "parquet" else _read_csv)(source, path, cfg, lazy=lazy)


def read_source_since(
    source: str, cfg: SourceConfig, *, settings: Settings, cursor: str, since: pd.Timestamp
) -> RawTable:
    """`read_source` for `persona refresh`: of a SQL table only the rows whose `cursor` (Persona column
    name) is at most a day before `since` or later, or null (the filter runs in the database; the
    caller makes the exact cut). A file is read whole: its rows have no index to filter on."""
    if not cfg.url:
        return read_source(source, cfg, settings=settings)
    location = settings.url(cfg.url)
    frame, absent = _read_sql(source, location, cfg, since=(cursor, since))
    return RawTable(source, f"{location} table {cfg.table}", frame.reset_index(drop=True), absent)

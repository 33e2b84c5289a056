"""Byte-reproducible streaming writers (no timestamps in gzip headers, fixed SQLite page layout, plain
parquet), appended to chunk by chunk, and the atomic publication of a finished dataset directory."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import PersonaError

_CSV_OPTIONS = pacsv.WriteOptions(include_header=True, batch_size=65_536, quoting_style="needed")
_CSV_NO_HEADER = pacsv.WriteOptions(include_header=False, batch_size=65_536, quoting_style="needed")


class CsvStream:
    """One CSV file written chunk by chunk (header once; strings quoted only where needed, nulls as
    empty fields); gzip with mtime 0 when asked, so the bytes depend on the data only."""

    def __init__(self, path: Path, *, gzip_level: int | None = None) -> None:
        self._raw = open(path, "wb")  # noqa: SIM115 (closed in __exit__)
        self._sink: BinaryIO = self._raw
        if gzip_level is not None:
            # filename="" and mtime=0 keep the gzip header identical from run to run.
            self._sink = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, compresslevel=gzip_level, mtime=0
            )
        self._header = True

    def write(self, table: pa.Table) -> None:
        options = _CSV_OPTIONS if self._header else _CSV_NO_HEADER
        pacsv.write_csv(table, self._sink, write_options=options)
        self._header = False

    def __enter__(self) -> CsvStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sink is not self._raw:
            self._sink.close()
        self._raw.close()


class SqliteStream:
    """One table of TEXT columns in a fresh SQLite file, appended chunk by chunk (a transaction each)."""

    def __init__(self, path: Path, *, name: str, primary_key: str) -> None:
        self._con = sqlite3.connect(path)
        self._name, self._primary_key = name, primary_key
        self._created = False

    def write(self, table: pa.Table) -> None:
        columns = table.column_names
        with self._con:
            if not self._created:
                ddl = ", ".join(
                    f'"{c}" TEXT{" PRIMARY KEY" if c == self._primary_key else ""}' for c in columns
                )
                self._con.execute(f'CREATE TABLE "{self._name}" ({ddl})')
                self._created = True
            rows = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
            self._con.executemany(
                f'INSERT INTO "{self._name}" VALUES ({", ".join("?" * len(columns))})', rows
            )

    def __enter__(self) -> SqliteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


class ParquetStream:
    """Parquet (zstd level 1), a row group per chunk, without pandas metadata or the Arrow schema: the
    bytes depend on the data only, and dictionary-encoded columns read back as plain strings."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self._path, table.schema, compression="zstd", compression_level=1, store_schema=False
            )
        self._writer.write_table(table)

    def __enter__(self) -> ParquetStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()


def check_target(out: Path, *, force: bool) -> None:
    """Refuse to replace a non-empty directory unless `force`: it may hold data nothing else has."""
    if out.exists() and not out.is_dir():
        raise PersonaError(f"{out} exists and is not a directory", hint="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PersonaError(
            f"{out} already holds data (e.g. {next(iter(sorted(out.iterdir()))).name}); not overwriting it",
            hint="pass --force to replace it, or choose another --out",
        )


def staging_dir(out: Path) -> Path:
    """A fresh sibling of `out` to write into (same filesystem, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` into place; an existing `out` is swapped away first, then deleted."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)  # put the previous dataset back
        raise
    if old is not None:
        shutil.rmtree(old)

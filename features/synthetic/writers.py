"""Byte-reproducible writers (no timestamps in gzip headers, fixed SQLite page layout, plain parquet)
and the atomic publication of a finished dataset directory."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import PersonaError

_CSV_OPTIONS = pacsv.WriteOptions(include_header=True, batch_size=65_536, quoting_style="needed")


def write_csv(table: pa.Table, path: Path, *, gzip_level: int | None = None) -> None:
    """CSV (strings quoted only where needed, nulls as empty fields); gzip with mtime 0 when asked."""
    with open(path, "wb") as raw:
        if gzip_level is None:
            pacsv.write_csv(table, raw, write_options=_CSV_OPTIONS)
            return
        # filename="" and mtime=0 keep the gzip header identical from run to run.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=gzip_level, mtime=0) as gz:
            pacsv.write_csv(table, gz, write_options=_CSV_OPTIONS)


def write_sqlite(table: pa.Table, path: Path, *, name: str, primary_key: str) -> None:
    """One table of TEXT columns in a fresh SQLite file, written in a single transaction."""
    columns = table.column_names
    ddl = ", ".join(f'"{c}" TEXT{" PRIMARY KEY" if c == primary_key else ""}' for c in columns)
    con = sqlite3.connect(path)
    try:
        with con:
            con.execute(f'CREATE TABLE "{name}" ({ddl})')
            rows = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
            con.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(columns))})', rows)
    finally:
        con.close()


def write_parquet(table: pa.Table, path: Path) -> None:
    """Parquet (zstd level 1) without pandas metadata or the Arrow schema: the bytes depend on the data
    only, and dictionary-encoded columns read back as plain strings."""
    pq.write_table(table, path, compression="zstd", compression_level=1, store_schema=False)


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

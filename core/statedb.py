"""Persona's state database (`settings.state_url`): one engine factory for every layer that keeps state
there (the consent list read by ingest, the tag store and outbox written by serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def make_state_engine(url: str) -> Engine:
    """An engine for Persona's state database; SQLite gets WAL + a busy time-out for the
    service-writer / dispatcher-thread concurrency, and its folder is created."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if sa_url.database and sa_url.database != ":memory:":
        Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def raw_cursor_ok(conn: Connection) -> bool:
    """Whether `execute_many` / `fetch_all` run on the driver's own cursor (positional paramstyles)."""
    return conn.dialect.paramstyle in _PLACEHOLDERS


def execute_many(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Bulk statement on the connection's own DBAPI cursor (same transaction), skipping SQLAlchemy's
    per-row parameter processing, which costs more than the database itself at a million rows.
    `{p}` in `sql` marks a positional parameter; drivers with other paramstyles go through SQLAlchemy.
    Values must already be in the form the driver stores (see `bind_value`)."""
    placeholder = _PLACEHOLDERS.get(conn.dialect.paramstyle)
    if placeholder is None:
        names = [f"p{i}" for i in range(sql.count("{p}"))]
        conn.execute(sa.text(_numbered(sql, names)), [dict(zip(names, row, strict=True)) for row in rows])
        return
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.executemany(sql.replace("{p}", placeholder), rows)
    finally:
        cursor.close()


def fetch_all(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """All rows of a query, fetched on the raw DBAPI cursor (see `execute_many`)."""
    placeholder = _PLACEHOLDERS.get(conn.dialect.paramstyle)
    if placeholder is None:
        names = [f"p{i}" for i in range(sql.count("{p}"))]
        result = conn.execute(sa.text(_numbered(sql, names)), dict(zip(names, params, strict=True)))
        return [tuple(r) for r in result]
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql.replace("{p}", placeholder), params)
        return cursor.fetchall()
    finally:
        cursor.close()


def bind_value(conn: Connection, column: sa.Column, value: Any) -> Any:
    """`value` as SQLAlchemy would hand it to the driver for `column` (e.g. SQLite's datetime text),
    for `execute_many`: convert once per distinct value, not per row."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process(value) if process else value


def _numbered(sql: str, names: list[str]) -> str:
    parts = sql.split("{p}")
    return parts[0] + "".join(f":{name}{part}" for name, part in zip(names, parts[1:], strict=True))

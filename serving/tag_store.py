"""Current tags and their history in Persona's state database (SQLAlchemy Core, any SQL database).

`tag_current` holds each customer's current value of each tag; `tag_history` holds every change (old
value, new value, time, what produced it, the inputs that mattered), so a CRM user can ask "why is this
customer at risk since Tuesday?". Unchanged values are not rewritten: `apply` compares the new values
with the stored ones in bulk (one query per tag and 500 customers, never the whole tag) and writes
only the changes, inside the caller's transaction, so the outbox entries of the same changes commit
with them.

Values are strings (flags `true`/`false`, numbers formatted stably: `3`, `0.25`); NULL means unset. A
customer with no row and a row whose value is NULL are the same: unset. `inputs` is JSON text.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import ValidationFailed
from core.statedb import bind_value, execute_many, fetch_all, raw_cursor_ok
from models.tag_engine import format_number_array, format_value
from serving.changes import TagChange

_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit
_SMALL_BATCH = 5_000  # up to this many customers, read current values row by row; above, grouped by value

metadata = sa.MetaData()
tag_current = sa.Table(
    "tag_current",
    metadata,
    # (tag, customer_id) as the key: reading one tag for all customers is a range scan
    sa.Column("tag", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("produced_by", sa.String(256), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON object
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_tag_current_customer", "customer_id"),
)
tag_history = sa.Table(
    "tag_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=True),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),  # when written (bookkeeping)
    sa.Column("produced_by", sa.String(256), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON object
    # the data's as_of the change was computed at (null: not known, e.g. a consent withdrawal):
    # a tag's history over time is read on the data's clock, not on the days the jobs happened to run
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_tag_history_customer", "customer_id", "changed_at"),
)


@dataclass(frozen=True, slots=True)
class CurrentTag:
    """A customer's current value of one tag, with what produced it."""

    tag: str
    value: str | None
    produced_by: str
    inputs: dict[str, Any]
    updated_at: datetime


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def value_strings(values: pd.Series | np.ndarray) -> np.ndarray:
    """Tag values as the strings stored and sent to the CRM (object array, None = unset)."""

    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return np.where(s.to_numpy(dtype=bool), "true", "false").astype(object)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return format_number_array(s.to_numpy(dtype=float, na_value=np.nan))
    arr = s.to_numpy(dtype=object, na_value=None)
    missing = pd.isna(arr)
    if pd.api.types.infer_dtype(arr[~missing], skipna=True) in ("string", "empty"):
        # the usual case (strings from format_values): no Python loop
        out = arr.copy()
        out[missing] = None
        return out
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):  # object columns are strings already; others are formatted one by one
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[i] = None
        elif isinstance(v, str):
            out[i] = v
        elif isinstance(v, bool | np.bool_):
            out[i] = format_value(bool(v), "flag")
        elif isinstance(v, int | float | np.number):
            out[i] = format_value(float(v), "number")
        else:
            out[i] = str(v)
    return out


class TagStore:
    """Current tags + history. `crm_fields` maps tag -> CRM field (default: the tag key);
    `tag_inputs` maps tag -> the input names recorded with its changes (default: every input column).
    Build it from the catalog with `TagStore.from_catalog(engine, catalog)`."""

    def __init__(
        self,
        engine: Engine,
        *,
        crm_fields: Mapping[str, str] | None = None,
        tag_inputs: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.engine = engine
        self.crm_fields = dict(crm_fields or {})
        self.tag_inputs = (
            {k: list(v) for k, v in (tag_inputs or {}).items()} if tag_inputs is not None else None
        )

    @classmethod
    def from_catalog(cls, engine: Engine, catalog: Any) -> TagStore:
        """A store that maps tags to the catalog's CRM fields and records each tag's own inputs."""
        return cls(engine, crm_fields=catalog.crm_fields, tag_inputs=catalog.tag_inputs)

    def create_schema(self) -> None:
        """Create `tag_current` and `tag_history` (and their indexes) if missing; idempotent. A store
        made before `tag_history.as_of` existed gets the column (null for its old rows)."""
        metadata.create_all(self.engine, checkfirst=True)
        columns = {c["name"] for c in sa.inspect(self.engine).get_columns("tag_history")}
        if "as_of" not in columns:
            kind = tag_history.c.as_of.type.compile(dialect=self.engine.dialect)
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE tag_history ADD COLUMN as_of {kind}"))

    # ----------------------------------------------------------------------------------------- write
    def apply(
        self,
        conn: Connection,
        *,
        tags: pd.DataFrame | Mapping[str, Mapping[str, Any]],
        produced_by: Mapping[str, str],
        inputs: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None = None,
        at: datetime,
        as_of: datetime | None = None,
    ) -> list[TagChange]:
        """Record the tag values in `tags` (column `customer_id` + one column per tag) as of `at`
        (when written), computed on the data of `as_of` (the data's clock, kept in the history).

        Only values that differ from the stored ones are written (to `tag_current` and `tag_history`)
        and returned as TagChange; runs in the caller's transaction `conn`. `produced_by` maps every
        tag to its rule or model version; `inputs` (column `customer_id` + input columns, or a mapping
        customer id -> {name: value}) supplies the values recorded with each change.
        """
        at = _as_utc(at)
        frame = _as_frame(tags, what="tags")
        tag_cols = [c for c in frame.columns if c != "customer_id"]
        lacking = [t for t in tag_cols if t not in produced_by]
        if lacking:
            raise ValidationFailed(f"produced_by has no entry for tag(s) {', '.join(lacking)}")
        ids = frame["customer_id"].astype(str).to_numpy(dtype=object)
        # one hash table of the batch's ids, reused to place the stored rows of every tag
        batch_index = pd.Index(ids)
        if not batch_index.is_unique:
            dup = batch_index[batch_index.duplicated()][0]
            raise ValidationFailed(
                f"tags: customer {dup} appears more than once; tag each customer once per batch"
            )
        inputs_frame = None if inputs is None else _aligned_inputs(_as_frame(inputs, what="inputs"), ids)
        changes: list[TagChange] = []
        for tag in tag_cols:
            new = value_strings(frame[tag].reset_index(drop=True))
            old, present = self._stored(conn, tag, ids, batch_index)
            changed = np.flatnonzero(~_equal(old, new))
            if changed.size == 0:
                continue
            payloads, texts = self._inputs_for(tag, changed, inputs_frame=inputs_frame, tags_frame=frame)
            changes.extend(
                self._write(
                    conn,
                    tag=tag,
                    ids=ids,
                    old=old,
                    new=new,
                    present=present,
                    changed=changed,
                    payloads=payloads,
                    texts=texts,
                    produced_by=produced_by[tag],
                    at=at,
                    as_of=None if as_of is None else _as_utc(as_of),
                )
            )
        return changes

    def _stored(
        self, conn: Connection, tag: str, ids: np.ndarray, batch_index: pd.Index
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stored values of `tag` for `ids` (None where unset) and whether a row exists."""
        t = tag_current
        if len(ids) <= _SMALL_BATCH:
            rows: list[Any] = []
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                rows.extend(
                    conn.execute(
                        sa.select(t.c.customer_id, t.c.value).where(
                            t.c.tag == tag, t.c.customer_id.in_(chunk)
                        )
                    ).all()
                )
        else:
            # only this batch's ids, never the whole tag: `score --all` applies chunk after chunk, and
            # reading every stored value of a tag per chunk made the run grow with chunks x stored rows
            unique = list(dict.fromkeys(ids))
            grouped = _fetch_grouped(conn, tag, unique)
            if grouped is not None:
                return _place(grouped, batch_index, len(ids))
            rows = []
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                rows.extend(
                    fetch_all(
                        conn,
                        "SELECT customer_id, value FROM tag_current WHERE tag = {p} AND customer_id IN "
                        f"({', '.join(['{p}'] * len(chunk))})",
                        (tag, *chunk),
                    )
                )
        old = np.full(len(ids), None, dtype=object)
        present = np.zeros(len(ids), dtype=bool)
        if rows:
            # list comprehensions: zip(*rows) over a million rows is ten times slower
            stored_ids = np.array([r[0] for r in rows], dtype=object)
            values = np.empty(len(rows), dtype=object)
            values[:] = [r[1] for r in rows]
            where = batch_index.get_indexer(stored_ids)  # -1: stored for a customer not in this batch
            found = where >= 0
            old[where[found]] = values[found]
            present[where[found]] = True
        return old, present

    def _inputs_for(
        self,
        tag: str,
        rows: np.ndarray,
        *,
        inputs_frame: pd.DataFrame | None,
        tags_frame: pd.DataFrame,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The inputs recorded with each changed row: the tag's own input names, from the inputs frame
        or (for tags read by other tags) from the tags frame."""
        wanted = self.tag_inputs.get(tag) if self.tag_inputs is not None else None
        parts = []
        if inputs_frame is not None:
            cols = (
                list(inputs_frame.columns)
                if wanted is None
                else [c for c in wanted if c in inputs_frame.columns]
            )
            if cols:
                parts.append(inputs_frame.iloc[rows][cols].reset_index(drop=True))
        if wanted is not None:
            from_tags = [
                c
                for c in wanted
                if c in tags_frame.columns and (inputs_frame is None or c not in inputs_frame.columns)
            ]
            if from_tags:
                parts.append(tags_frame.iloc[rows][from_tags].reset_index(drop=True))
        if not parts:
            return [{} for _ in range(len(rows))], ["{}"] * len(rows)
        picked = pd.concat(parts, axis=1)
        # to_json turns NaN/NaT into null and numpy scalars into JSON numbers, in C
        texts = picked.to_json(orient="records", lines=True).splitlines()
        return json.loads("[" + ",".join(texts) + "]"), texts

    def _write(
        self,
        conn: Connection,
        *,
        tag: str,
        ids: np.ndarray,
        old: np.ndarray,
        new: np.ndarray,
        present: np.ndarray,
        changed: np.ndarray,
        payloads: list[dict[str, Any]],
        texts: list[str],
        produced_by: str,
        at: datetime,
        as_of: datetime | None,
    ) -> list[TagChange]:
        cids, olds, news = ids[changed].tolist(), old[changed].tolist(), new[changed].tolist()
        # the time as the dialect stores it, converted once (not per row by SQLAlchemy)
        when = bind_value(conn, tag_history.c.changed_at, at)
        data_when = None if as_of is None else bind_value(conn, tag_history.c.changed_at, as_of)
        execute_many(
            conn,
            "INSERT INTO tag_history "
            "(customer_id, tag, old_value, new_value, changed_at, produced_by, inputs, as_of) "
            "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
            [
                (c, tag, o, n, when, produced_by, x, data_when)
                for c, o, n, x in zip(cids, olds, news, texts, strict=True)
            ],
        )
        exists = present[changed].tolist()
        updates = [
            (n, produced_by, x, when, tag, c)
            for c, n, x, e in zip(cids, news, texts, exists, strict=True)
            if e
        ]
        inserts = [
            (tag, c, n, produced_by, x, when)
            for c, n, x, e in zip(cids, news, texts, exists, strict=True)
            if not e
        ]
        if updates:
            execute_many(
                conn,
                "UPDATE tag_current SET value = {p}, produced_by = {p}, inputs = {p}, updated_at = {p} "
                "WHERE tag = {p} AND customer_id = {p}",
                updates,
            )
        if inserts:
            execute_many(
                conn,
                "INSERT INTO tag_current (tag, customer_id, value, produced_by, inputs, updated_at) "
                "VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                inserts,
            )
        crm_field = self.crm_fields.get(tag, tag)
        return [
            TagChange(
                customer_id=c,
                tag=tag,
                crm_field=crm_field,
                old_value=o,
                new_value=n,
                changed_at=at,
                produced_by=produced_by,
                inputs=p,
            )
            for c, o, n, p in zip(cids, olds, news, payloads, strict=True)
        ]

    # ------------------------------------------------------------------------------------------ read
    def current(self, customer_id: str) -> list[CurrentTag]:
        """The customer's current tags (sorted by tag), with what produced each and its inputs."""
        t = tag_current
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.customer_id == customer_id).order_by(t.c.tag)).all()
        return [
            CurrentTag(r.tag, r.value, r.produced_by, json.loads(r.inputs), _as_utc(r.updated_at))
            for r in rows
        ]

    def history(self, customer_id: str, *, limit: int = 10, tag: str | None = None) -> list[TagChange]:
        """The customer's most recent changes, newest first (optionally of one tag)."""
        h = tag_history
        query = sa.select(h).where(h.c.customer_id == customer_id)
        if tag is not None:
            query = query.where(h.c.tag == tag)
        query = query.order_by(h.c.changed_at.desc(), h.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            TagChange(
                customer_id=r.customer_id,
                tag=r.tag,
                crm_field=self.crm_fields.get(r.tag, r.tag),
                old_value=r.old_value,
                new_value=r.new_value,
                changed_at=_as_utc(r.changed_at),
                produced_by=r.produced_by,
                inputs=json.loads(r.inputs),
            )
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        """Row counts of both tables (for summaries)."""
        with self.engine.connect() as conn:
            return {
                "current": conn.execute(sa.select(sa.func.count()).select_from(tag_current)).scalar_one(),
                "history": conn.execute(sa.select(sa.func.count()).select_from(tag_history)).scalar_one(),
            }


_SEP = "\x1f"  # ASCII unit separator: cannot occur in a customer id
_GROUPED_SQL = {  # {ids}: the placeholders of one chunk of the batch's ids
    "sqlite": "SELECT value, group_concat(customer_id, char(31)) FROM tag_current "
    "WHERE tag = {p} AND customer_id IN ({ids}) GROUP BY value",
    "postgresql": "SELECT value, string_agg(customer_id, chr(31)) FROM tag_current "
    "WHERE tag = {p} AND customer_id IN ({ids}) GROUP BY value",
}


def _fetch_grouped(conn: Connection, tag: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored (customer ids, values) of one tag for `ids`, read per chunk of ids as one row per distinct
    value with the ids concatenated by the database: a few rows instead of a Python tuple per customer
    (tags have few distinct values). None on databases without an aggregate for it (the caller reads
    row by row)."""
    sql = _GROUPED_SQL.get(conn.dialect.name)
    if sql is None or not raw_cursor_ok(conn):
        return None
    groups = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        groups.extend(fetch_all(conn, sql.replace("{ids}", ", ".join(["{p}"] * len(chunk))), (tag, *chunk)))
    parts = [joined.split(_SEP) for _, joined in groups]
    counts = [len(p) for p in parts]
    stored_ids = np.empty(sum(counts), dtype=object)
    stored_ids[:] = list(itertools.chain.from_iterable(parts))
    distinct = np.empty(len(groups), dtype=object)
    distinct[:] = [value for value, _ in groups]
    return stored_ids, np.repeat(distinct, counts)


def _place(
    grouped: tuple[np.ndarray, np.ndarray], batch_index: pd.Index, n: int
) -> tuple[np.ndarray, np.ndarray]:
    stored_ids, values = grouped
    old = np.full(n, None, dtype=object)
    present = np.zeros(n, dtype=bool)
    where = batch_index.get_indexer(stored_ids)  # -1: stored for a customer not in this batch
    found = where >= 0
    old[where[found]] = values[found]
    present[where[found]] = True
    return old, present


def _aligned_inputs(inputs: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """The inputs rows of `ids`, in batch order (a customer missing from inputs gets nulls)."""
    inputs = (
        inputs.drop_duplicates("customer_id", keep="last") if not inputs["customer_id"].is_unique else inputs
    )
    pos = pd.Index(inputs["customer_id"].astype(str)).get_indexer(ids)
    aligned = inputs.drop(columns="customer_id").iloc[np.where(pos >= 0, pos, 0)].reset_index(drop=True)
    if (pos < 0).any():
        aligned = aligned.astype(object)
        aligned.loc[pos < 0, :] = None
    return aligned


def _equal(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Element-wise equality of two object arrays of str/None, where None equals None."""
    both_null = pd.isna(old) & pd.isna(new)
    with np.errstate(invalid="ignore"):
        same = old == new
    return np.asarray(same, dtype=bool) | both_null


def _as_frame(data: pd.DataFrame | Mapping[str, Mapping[str, Any]], *, what: str) -> pd.DataFrame:
    """`data` as a frame with a unique string `customer_id` column."""
    if isinstance(data, Mapping):
        frame = pd.DataFrame.from_dict(dict(data), orient="index")
        frame.index.name = "customer_id"
        frame = frame.reset_index()
    elif isinstance(data, pd.DataFrame):
        frame = data
        if "customer_id" not in frame.columns:
            if frame.index.name != "customer_id":
                raise ValidationFailed(f"{what}: needs a 'customer_id' column (or index)")
            frame = frame.reset_index()
    else:
        raise ValidationFailed(f"{what}: expected a DataFrame or a mapping, got {type(data).__name__}")
    if frame["customer_id"].isna().any():
        row = int(np.flatnonzero(frame["customer_id"].isna().to_numpy())[0])
        raise ValidationFailed(f"{what}: customer_id is empty in row {row + 1}")
    return frame

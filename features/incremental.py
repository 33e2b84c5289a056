"""Row-level incremental ingest for `persona refresh`: read only the sources' new rows, re-ingest only
the persons they touch, leave every other row of the clean tables as it was.

The result is the clean tables a full `persona ingest` of the same sources writes (tests/data/
test_incremental_ingest.py holds it to that, row for row). How:

1. **Staged rows.** Every source row ingested so far is kept per source in `{data_dir}/incremental/`
   (Persona's columns as read, plus its position in the source `_row`, a content hash `_hash`, its
   parsed timestamps and hashed identity keys), so a run never re-reads old source rows. The store is
   a copy of source rows: it is as sensitive as the sources and lives beside them in the data dir.
2. **New rows.** A source with `incremental.cursor` is read from a day before the last run's `as_of`
   (in the database for a SQL table; after reading for a file, whose unchanged size and modification
   time skip it altogether); rows before `as_of` are not looked at, rows at or after it whose content
   was staged already are not new (a re-run adds nothing). An updated SQL row replaces the staged row
   of the same record key (contact id, lead id, order id, event id). A file's rows before the
   watermark must still be where they were (a file grows at the end), else the run is a full one. A
   source without a cursor is read whole and compared with the staged rows position by position
   (changed, added, removed rows).
3. **Affected persons.** From the keys of the new, replaced and removed rows (contact id, normalised
   email and phone, an order's id; hashed) the staged rows sharing a key, transitively: exactly the
   persons a full ingest would build from rows touching them, and a person two new keys merge. Rows that
   the last `as_of` (+ tolerance) quarantined as future-dated and the new one admits are looked at again
   when the clock moves; rows still past the new clock are not (their quarantine rows are the same).
4. **Ingest and merge.** `features.ingest.ingest_frames` runs on those rows (with their positions, so
   quarantine rows and row-named records are those of a full run, and the run's `as_of` of all staged
   rows); the customers it returns, and the ones their rows belonged to before, replace theirs in the
   clean tables (customer ids are the hash of a person's smallest key, so unchanged persons keep theirs).

Anything the subset cannot decide alone (a source that would be empty, a changed config, clean tables
written by `persona ingest` since) falls back to a full ingest, which also rebuilds the staged rows.
The caller keeps `state` (watermarks, file signatures) and saves it only after this returns, i.e. after
the clean tables and staged rows are written: a crash leaves the old state, and the re-run redoes the
same work (idempotent).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from configs.sections.sources import SourceConfig
from configs.settings import Settings
from core.errors import SourceError, ValidationFailed
from features.clock import derive_as_of
from features.engine import open_engine
from features.ingest import (
    ACTIVITY_TIMESTAMPS,
    REPORT_FILE,
    SOURCES,
    IngestResult,
    clean_dir,
    ingest_frames,
    publish,
    read_sources,
    resolve_as_of,
)
from features.normalize import looks_like_email, normalize_emails, normalize_phones, parse_timestamps
from features.readers import RawTable, read_source, read_source_since
from features.salt_guard import require_private_salt
from features.schemas import KINDS

STAGE_DIR = "incremental"
KEYS = ("_k_contact", "_k_email", "_k_phone", "_k_order")
# The column naming a source's record: an updated database row replaces the staged row with its value.
RECORD_KEYS = {"contacts": "contact_id", "leads": "lead_id", "orders": "order_id", "events": "event_id"}
PERSON_TABLES = ("customers", "identity_map", "orders", "order_lines", "events", "leads")
SORT_KEYS = {
    "customers": ["customer_id"],
    "orders": ["order_ts", "order_id"],
    "order_lines": ["order_ts", "order_id"],
    "events": ["event_ts"],
}


class _NeedsFull(Exception):
    """The subset cannot be ingested alone: run a full ingest (the message says why)."""


@dataclass
class IncrementalOutcome:
    """What one incremental (or full) ingest did. `state` is what the caller saves for the next run."""

    full: bool
    reason: str = ""
    new_rows: dict[str, int] = field(default_factory=dict)  # source -> rows new or changed
    customers: int = 0  # persons re-ingested (all of them after a full ingest)
    state: dict[str, Any] = field(default_factory=dict)
    result: IngestResult | None = None  # None: nothing was new, the clean tables are untouched

    def line(self) -> str:
        """One line for people, e.g. `ingest: 2,041 new rows (orders 2,000, contacts 41) -> 1,187
        customers re-ingested`."""
        total = sum(self.new_rows.values())
        per = ", ".join(f"{name} {n:,}" for name, n in self.new_rows.items() if n)
        rows = f"{total:,} new rows" + (f" ({per})" if per else "")
        if self.full:
            return f"ingest: full ({self.reason}): {rows} -> {self.customers:,} customers"
        if self.result is None:
            return "ingest: no new rows since the last refresh: clean tables unchanged"
        return f"ingest: {rows} -> {self.customers:,} customers re-ingested"


def stage_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / STAGE_DIR


def ingest_incremental(
    settings: Settings, *, state: dict[str, Any] | None, full: bool = False
) -> IncrementalOutcome:
    """Ingest what is new since the run that left `state` (see module doc); `full` re-ingests all."""
    require_private_salt(settings)
    reason = "--full" if full else _why_full(settings, state or {})
    if not reason:
        try:
            return _incremental(settings, state or {})
        except _NeedsFull as exc:
            reason = str(exc)
    return _full(settings, reason)


# ------------------------------------------------------------------------------------------- state
def _config_digest(settings: Settings) -> str:
    """What the staged rows and clean tables depend on besides the data: the sources' mapping and the
    identity rules (the salt only as a hash). Not the data's clock `sources.as_of`: a scheduled refresh
    gives a later one every run, and a clock that moves on is what the incremental run handles (one that
    moves back falls back to a full ingest)."""
    payload = {
        "sources": settings.sources.model_dump(mode="json", exclude={"as_of"}),
        "region": settings.identity.default_region,
        "salt": hashlib.sha256(settings.identity.salt.get_secret_value().encode("utf-8")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _clean_report(settings: Settings) -> dict[str, Any]:
    path = clean_dir(settings) / REPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _why_full(settings: Settings, state: dict[str, Any]) -> str:
    if not state:
        return "no earlier incremental run"
    if state.get("config") != _config_digest(settings):
        return "the sources or identity config changed"
    if _clean_report(settings).get("created") != state.get("clean_created"):
        return "the clean tables were written by another run"
    for name in state.get("staged", []):
        if not (stage_dir(settings) / f"{name}.parquet").is_file():
            return f"staged rows of {name} missing"
    return ""


def _file_signature(settings: Settings, cfg: SourceConfig) -> list[int] | None:
    if not cfg.path:
        return None
    path = settings.path(cfg.path)
    if not path.is_file():
        return None
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _cursor(cfg: SourceConfig) -> str | None:
    return cfg.incremental.cursor if cfg.incremental is not None else None


def _signatures(settings: Settings) -> dict[str, list[int]]:
    """Size and modification time of each file source, taken before it is read (a file written while
    it is read is read again next time)."""
    files = {n: _file_signature(settings, getattr(settings.sources, n)) for n in SOURCES}
    return {n: s for n, s in files.items() if s is not None}


def _state_after(
    settings: Settings, staged: dict[str, pd.DataFrame], as_of: pd.Timestamp, files: dict[str, list[int]]
) -> dict[str, Any]:
    watermarks = {}
    for name, frame in staged.items():
        cursor = _cursor(getattr(settings.sources, name))
        column = f"_ts_{cursor}"
        if cursor and column in frame and frame[column].notna().any():
            # never past the data's clock: a stray future-dated row must not hide the rows before it
            watermarks[name] = min(pd.Timestamp(frame[column].max()), as_of).isoformat()
    return {
        "config": _config_digest(settings),
        "clean_created": _clean_report(settings).get("created"),
        "as_of": as_of.isoformat(),
        "watermarks": watermarks,
        "files": {name: files[name] for name in staged if name in files},
        "staged": sorted(staged),
    }


# ------------------------------------------------------------------------------------------ staged rows
def _hash_text(kind: str, values: pd.Series) -> np.ndarray:
    """uint64 of `kind` + value, 0 where the value is missing (a key only needs equality here)."""
    text = values.astype("string[pyarrow]")
    present = text.notna().to_numpy()
    out = np.zeros(len(text), dtype="uint64")
    if present.any():
        labelled = (kind + "\x1f" + text[present]).to_numpy(dtype=object)
        out[present] = pd.util.hash_array(labelled)
    return out


def _strip(values: pd.Series) -> pd.Series:
    text = values.astype("string[pyarrow]").str.strip()
    return text.mask(text == "")


def _keys(
    name: str, frame: pd.DataFrame, cfg: SourceConfig, *, region: str, contact_ids: pd.Index, cache: dict
) -> dict[str, np.ndarray]:
    """Hashed identity keys of raw rows: every key a full ingest could link the row by (a superset:
    an order's reference counts as a contact id too, in case that contact arrives later)."""
    empty = pd.Series(pd.NA, index=frame.index, dtype="string[pyarrow]")
    contact = email = phone = order = empty
    if name == "contacts":
        contact = _strip(frame["contact_id"])
        email = normalize_emails(frame["email"]) if "email" in frame else empty
        phone = (
            normalize_phones(frame["phone"], default_region=region, cache=cache)
            if "phone" in frame
            else empty
        )
    elif name == "leads":
        email = normalize_emails(frame["email"]) if "email" in frame else empty
        phone = (
            normalize_phones(frame["phone"], default_region=region, cache=cache)
            if "phone" in frame
            else empty
        )
    else:
        ref = _strip(frame["customer_ref" if name == "orders" else "user_ref"])
        contact = ref
        if cfg.customer_key == "contact":
            is_email = looks_like_email(ref).to_numpy()
            other = ~is_email & ~ref.isin(contact_ids).fillna(False).to_numpy(bool)
            email = normalize_emails(ref.where(is_email))
            phone = normalize_phones(ref.where(other), default_region=region, cache=cache)
        if name == "orders" and "order_id" in frame:
            order = _strip(frame["order_id"])  # the lines of one order stand or fall together
    return {
        "_k_contact": _hash_text("contact", contact),
        "_k_email": _hash_text("email", email),
        "_k_phone": _hash_text("phone", phone),
        "_k_order": _hash_text("order", order),
    }


def _row_hash(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()


def _stage(
    name: str,
    frame: pd.DataFrame,
    cfg: SourceConfig,
    *,
    region: str,
    contact_ids: pd.Index,
    cache: dict,
    row_hash: np.ndarray | None = None,
) -> pd.DataFrame:
    """Raw rows (index = position in the source) with what later runs need to find them again."""
    columns = [c for c in frame.columns if not c.startswith("_")]
    out = frame[columns].copy()
    out["_row"] = frame.index.to_numpy(dtype="int64")
    out["_hash"] = _row_hash(frame, columns) if row_hash is None else row_hash
    kind_key = "order_lines" if name == "orders" and cfg.layout == "order_lines" else name
    stamps = []
    for column, kind in KINDS[kind_key].items():
        if kind == "ts" and column in frame:
            parsed = parse_timestamps(frame[column], timezone=cfg.timezone, date_format=cfg.date_format)
            out[f"_ts_{column}"] = parsed
            stamps.append(parsed)
    latest = pd.concat(stamps, axis=1).max(axis=1) if stamps else pd.Series(pd.NaT, index=frame.index)
    out["_latest"] = pd.to_datetime(latest, utc=True)
    for key, values in _keys(name, frame, cfg, region=region, contact_ids=contact_ids, cache=cache).items():
        out[key] = values
    return out.reset_index(drop=True)


def _contact_ids(frame: pd.DataFrame | None) -> pd.Index:
    if frame is None or "contact_id" not in frame:
        return pd.Index([], dtype="string[pyarrow]")
    return pd.Index(_strip(frame["contact_id"]).dropna().unique())


def _read_staged(settings: Settings, names: list[str]) -> dict[str, pd.DataFrame]:
    return {
        name: pq.read_table(stage_dir(settings) / f"{name}.parquet").to_pandas(types_mapper=_ARROW_TEXT.get)
        for name in names
    }


def _write_staged(
    settings: Settings, staged: dict[str, pd.DataFrame], *, only: set[str] | None = None
) -> None:
    """Write the staged rows atomically per source; drop those of sources no longer staged."""
    folder = stage_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in staged.items():
        if only is not None and name not in only:
            continue
        tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.parquet.tmp"
        try:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
            os.replace(tmp, folder / f"{name}.parquet")
        finally:
            tmp.unlink(missing_ok=True)
    for path in folder.glob("*.parquet"):
        if path.stem not in staged:
            path.unlink()


# --------------------------------------------------------------------------------------------- full
def _full(settings: Settings, reason: str) -> IncrementalOutcome:
    """`persona ingest` (the same pure core and writer), then stage every row read."""
    files = _signatures(settings)
    raw_tables = read_sources(settings, lazy=False)  # every row read is staged below
    with open_engine(settings) as engine:
        result = ingest_frames(
            raw_tables,
            sources=settings.sources,
            identity=settings.identity,
            as_of=resolve_as_of(settings),
            engine=engine,
        )
    publish(result, settings)
    region, cache = settings.identity.default_region, {}
    contacts = raw_tables.get("contacts")
    contact_ids = _contact_ids(contacts.frame if contacts else None)
    staged = {
        name: _stage(
            name,
            table.frame,
            getattr(settings.sources, name),
            region=region,
            contact_ids=contact_ids,
            cache=cache,
        )
        for name, table in raw_tables.items()
        if table is not None
    }
    _write_staged(settings, staged)
    customers = result.tables["customers"]
    return IncrementalOutcome(
        full=True,
        reason=reason,
        new_rows={name: len(frame) for name, frame in staged.items()},
        customers=0 if customers is None else len(customers),
        state=_state_after(settings, staged, result.as_of, files),
        result=result,
    )


# -------------------------------------------------------------------------------------- incremental
@dataclass
class _Change:
    """One source's change: the staged rows after it, the rows that are new or changed (positions),
    and the keys of rows replaced or removed (they may have linked persons that now split)."""

    staged: pd.DataFrame
    changed_rows: np.ndarray
    old_keys: np.ndarray
    removed: pd.DataFrame  # staged rows no longer in the source
    location: str


def _read_new(
    settings: Settings, name: str, cfg: SourceConfig, *, since: pd.Timestamp | None
) -> tuple[pd.DataFrame, str, bool]:
    """(candidate rows, location, whether the index is the rows' position in the source)."""
    cursor = _cursor(cfg)
    if cfg.url and cursor and since is not None:
        table = read_source_since(name, cfg, settings=settings, cursor=cursor, since=since)
        return table.frame, table.location, False
    table = read_source(name, cfg, settings=settings)
    return table.frame, table.location, True


def _maybe_since(values: pd.Series, since: pd.Timestamp, cfg: SourceConfig) -> np.ndarray:
    """A quick cut before the exact parse: ISO 8601 text whose date is two days or more before `since`
    (any time zone) is older; anything else (other text, empty) stays a candidate."""
    if cfg.date_format is not None or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return np.ones(len(values), dtype=bool)
    text = values.astype("string[pyarrow]").str.strip()
    day = text.str.slice(0, 10)
    iso = day.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).to_numpy(bool)
    bound = (since - pd.Timedelta(days=2)).date().isoformat()
    older = iso & (day < bound).fillna(False).to_numpy(bool)
    return ~older


def _changed_in_place(
    name: str,
    frame: pd.DataFrame,
    columns: list[str],
    by_row: pd.DataFrame,
    *,
    cursor: str,
    since: pd.Timestamp,
) -> np.ndarray:
    """A file read by cursor is taken in from the watermark on, so its earlier rows must still be where
    they were: a row's position is its identity (its quarantine row number, the record id of an order
    without a number). A row inserted or removed before the end moves every row after it (CDNOW's file
    is sorted by customer: a later purchase lands among earlier ones); that, or an earlier row edited in
    place, needs a full ingest. Returns the staged rows (positions in `by_row`) at or after the
    watermark whose place now holds other content: they may have changed in place, or moved (the
    caller tells them apart). Compares values, not hashes: hashing every row of a large file each run
    costs far more than reading it."""
    where = frame.index.get_indexer(by_row.index)
    present = where >= 0
    same = present.copy()
    for column in columns:
        now = frame[column].iloc[where[present]].reset_index(drop=True)
        was = by_row[column][present].reset_index(drop=True)
        equal = (now == was).fillna(False).to_numpy(bool) | (now.isna() & was.isna()).to_numpy(bool)
        same[present] &= equal
    differ = ~same
    if not differ.any():
        return np.zeros(0, dtype="int64")
    stamps = pd.to_datetime(by_row[f"_ts_{cursor}"], utc=True)
    older = differ & (stamps < since).fillna(False).to_numpy(bool)
    if older.any():
        _moved(name, by_row, np.flatnonzero(older))
    return np.flatnonzero(differ)


def _moved(name: str, by_row: pd.DataFrame, bad: np.ndarray) -> None:
    row = int(by_row.index[bad[0]]) + 1
    raise _NeedsFull(
        f"{len(bad):,} earlier rows of {name} moved or changed (first: row {row:,}); a source read by "
        "cursor must only grow at the end"
    )


def _apply(
    settings: Settings,
    name: str,
    cfg: SourceConfig,
    staged: pd.DataFrame,
    *,
    since: pd.Timestamp | None,
    region: str,
    contact_ids: pd.Index,
    cache: dict,
) -> _Change | None:
    """Read a source's new rows and fold them into its staged rows (see module doc, 2.)."""
    frame, location, positioned = _read_new(settings, name, cfg, since=since)
    columns = [c for c in staged.columns if not c.startswith("_")]
    if sorted(frame.columns) != sorted(columns):
        raise _NeedsFull(f"the columns of {name} changed")
    frame = frame[columns]
    cursor = _cursor(cfg)
    by_row = staged.set_index("_row")
    no_keys = np.zeros(0, dtype="uint64")
    late = np.zeros(0, dtype="int64")  # staged rows past the watermark whose place holds other content
    if cursor and since is not None and cursor in frame:
        if positioned:
            late = _changed_in_place(name, frame, columns, by_row, cursor=cursor, since=since)
        frame = frame[_maybe_since(frame[cursor], since, cfg)]
        stamps = parse_timestamps(frame[cursor], timezone=cfg.timezone, date_format=cfg.date_format)
        frame = frame[((stamps >= since) | stamps.isna()).to_numpy()]
    elif positioned:
        # no cursor: compare the whole source with the staged rows position by position
        hashes = pd.Series(_row_hash(frame, columns), index=frame.index)
        before = by_row["_hash"]
        common = hashes.index.intersection(before.index)
        changed = hashes.index.difference(before.index).union(common[hashes[common] != before[common]])
        removed = before.index.difference(hashes.index).to_numpy()
        replaced = common.intersection(changed)
        old = by_row.loc[replaced.union(pd.Index(removed)), list(KEYS)].to_numpy().ravel()
        if not len(changed) and not len(removed):
            return None
        gone = staged[staged["_row"].isin(removed)]
        new = _stage(
            name,
            frame.loc[changed],
            cfg,
            region=region,
            contact_ids=contact_ids,
            cache=cache,
            row_hash=hashes[changed].to_numpy(),
        )
        kept = staged[~staged["_row"].isin(replaced.union(pd.Index(removed)))]
        out = pd.concat([kept, new], ignore_index=True).sort_values("_row", kind="stable")
        return _Change(out.reset_index(drop=True), new["_row"].to_numpy(), old, gone, location)
    # rows seen before (at the watermark, or read again from the day before it) are not new
    hashes = _row_hash(frame, columns)
    if len(late):
        # a changed row may stay; one whose old content is now elsewhere moved (its cursor value moved
        # with it, so it is among the rows read from the watermark on)
        moved = late[np.isin(by_row["_hash"].to_numpy()[late], hashes)]
        if len(moved):
            _moved(name, by_row, moved)
    fresh = ~pd.Series(hashes).isin(staged["_hash"])
    frame = frame[fresh.to_numpy()]
    if frame.empty:
        return None
    replaced = pd.Index([], dtype="int64")
    if positioned:
        positions = frame.index
        replaced = positions.intersection(by_row.index)  # a file row changed in place
    else:
        # a database row has no stable position: an updated record replaces the staged row of its key
        key = RECORD_KEYS[name]
        after = int(staged["_row"].max()) + 1 if len(staged) else 0
        positions = pd.Index(np.arange(len(frame)) + after)
        if key in frame and not (name == "orders" and cfg.layout == "order_lines"):
            ids = _strip(frame[key])
            known = pd.Series(staged["_row"].to_numpy(), index=_strip(staged[key]).to_numpy())
            known = known[~known.index.duplicated(keep="last")]
            hit = ids.isin(known.index).fillna(False).to_numpy(bool)
            values = positions.to_numpy().copy()
            values[hit] = known.reindex(ids[hit].to_numpy()).to_numpy()
            positions = pd.Index(values)
            replaced = pd.Index(values[hit])
        frame = frame.set_axis(positions)
    old = by_row.loc[replaced, list(KEYS)].to_numpy().ravel() if len(replaced) else no_keys
    new = _stage(name, frame, cfg, region=region, contact_ids=contact_ids, cache=cache)
    kept = staged[~staged["_row"].isin(replaced)]
    out = pd.concat([kept, new], ignore_index=True).sort_values("_row", kind="stable")
    return _Change(out.reset_index(drop=True), new["_row"].to_numpy(), old, staged.iloc[:0], location)


def _closure(staged: dict[str, pd.DataFrame], seeds: np.ndarray) -> dict[str, np.ndarray]:
    """Per source, the staged rows linked to `seeds` (hashed keys) through shared keys, transitively."""
    picked = {name: np.zeros(len(frame), dtype=bool) for name, frame in staged.items()}
    frontier = pd.Index(np.unique(seeds[seeds != 0]))
    known = frontier
    while len(frontier):
        found = []
        for name, frame in staged.items():
            hit = np.zeros(len(frame), dtype=bool)
            for key in KEYS:
                hit |= frame[key].isin(frontier).to_numpy()
            hit &= ~picked[name]
            if hit.any():
                picked[name] |= hit
                found.append(frame.loc[hit, list(KEYS)].to_numpy().ravel())
        more = pd.Index(np.unique(np.concatenate(found))) if found else pd.Index([], dtype="uint64")
        frontier = more.difference(known).drop(0, errors="ignore")
        known = known.union(frontier)
    return picked


def _record_ids(name: str, rows: pd.DataFrame, cfg: SourceConfig) -> pd.Series:
    """The identity_map `source_record_id` each raw row would get (see `ingest_frames`)."""
    fallback = pd.Series((rows["_row"] + 1).astype(str).to_numpy(), index=rows.index, dtype="string[pyarrow]")
    column = RECORD_KEYS[name]
    if column in rows:
        ids = _strip(rows[column])
        return ids.fillna(fallback) if name == "events" else ids
    if name == "orders":
        return "row-" + fallback
    return fallback


def _incremental(settings: Settings, state: dict[str, Any]) -> IncrementalOutcome:
    sources = settings.sources
    names = [n for n in SOURCES if getattr(sources, n).configured]
    if sorted(names) != sorted(state.get("staged", [])):
        raise _NeedsFull("the configured sources changed")
    staged = _read_staged(settings, names)
    files = _signatures(settings)
    old_as_of = pd.Timestamp(state["as_of"])
    watermarks = {n: pd.Timestamp(v) for n, v in state.get("watermarks", {}).items()}
    region, cache = settings.identity.default_region, {}
    contact_ids = _contact_ids(staged.get("contacts"))
    changes: dict[str, _Change] = {}
    locations: dict[str, str] = {}
    for name in names:  # contacts first: orders and events route references by their ids
        cfg: SourceConfig = getattr(sources, name)
        if name in files and files[name] == state.get("files", {}).get(name):
            continue
        change = _apply(
            settings,
            name,
            cfg,
            staged[name],
            since=watermarks.get(name),
            region=region,
            contact_ids=contact_ids,
            cache=cache,
        )
        if change is not None:
            changes[name] = change
            staged[name] = change.staged
            locations[name] = change.location
            if name == "contacts":
                contact_ids = _contact_ids(change.staged)
    new_rows = {name: len(change.changed_rows) + len(change.removed) for name, change in changes.items()}

    given = resolve_as_of(settings)
    as_of = given if given is not None else _derive_as_of(staged)
    if as_of is None or as_of < old_as_of:
        raise _NeedsFull("the data's clock moved back")
    tolerance = pd.Timedelta(hours=sources.future_tolerance_hours)
    if not changes and as_of == old_as_of:
        return IncrementalOutcome(full=False, state={**state, "files": files})

    # seeds: the keys of new, replaced and removed rows, and of rows the moved clock admits
    seeds = [np.zeros(0, dtype="uint64")]
    touched: dict[str, np.ndarray] = {}
    for name, frame in staged.items():
        mask = np.zeros(len(frame), dtype=bool)
        if name in changes:
            mask |= frame["_row"].isin(changes[name].changed_rows).to_numpy()
            seeds.append(changes[name].old_keys.astype("uint64"))
        if as_of > old_as_of:
            # only rows the old clock quarantined as future-dated and the new one admits: rows still past
            # the new clock are quarantined alike by both (they were most of the seeds, issue 16)
            latest = pd.to_datetime(frame["_latest"], utc=True)
            admitted = (latest > old_as_of + tolerance) & (latest <= as_of + tolerance)
            mask |= admitted.fillna(False).to_numpy(bool)
        touched[name] = mask
        seeds.append(frame.loc[mask, list(KEYS)].to_numpy().ravel().astype("uint64"))
    for frame in staged.values():
        # one known person per source rides along, so no source of the subset is empty or all bad
        usable = (frame[list(KEYS)] != 0).any(axis=1) & (
            pd.to_datetime(frame["_latest"], utc=True) <= as_of
        ).fillna(True)
        if usable.any():
            seeds.append(frame.loc[usable.idxmax(), list(KEYS)].to_numpy().astype("uint64"))
    picked = _closure(staged, np.concatenate(seeds))
    subset: dict[str, RawTable | None] = {}
    for name in SOURCES:
        if name not in staged:
            subset[name] = None
            continue
        rows = staged[name][picked[name] | touched[name]]
        if rows.empty:
            subset[name] = None
            continue
        columns = [c for c in rows.columns if not c.startswith("_")]
        frame = rows[columns].set_axis(pd.Index(rows["_row"].to_numpy()))
        location = locations.get(name) or _location(settings, getattr(sources, name))
        subset[name] = RawTable(name, location, frame)
    if subset.get("orders") is None:
        raise _NeedsFull("no order among the rows to re-ingest")
    try:
        with open_engine(settings) as engine:
            result = ingest_frames(
                subset, sources=sources, identity=settings.identity, as_of=as_of, engine=engine
            )
    except (ValidationFailed, SourceError) as exc:
        raise _NeedsFull(f"the new rows alone: {exc}") from None

    merged, customers = _merge(settings, result, staged, subset, changes)
    merged_result = IngestResult(
        tables=merged,
        sources=result.sources,
        as_of=as_of,
        match_rules=_match_rules(merged["identity_map"]),
        as_of_given=given is not None,
        future_tolerance_hours=sources.future_tolerance_hours,
    )
    for name, report in merged_result.sources.items():
        if report.status == "ok":
            report.notes.append(f"incremental: {report.read:,} rows re-ingested of {len(staged[name]):,}")
    publish(merged_result, settings)
    _write_staged(settings, staged, only=set(changes))
    return IncrementalOutcome(
        full=False,
        new_rows=new_rows,
        customers=customers,
        state=_state_after(settings, staged, as_of, files),
        result=merged_result,
    )


def _location(settings: Settings, cfg: SourceConfig) -> str:
    if cfg.url:
        return f"{settings.url(cfg.url)} table {cfg.table}"
    return str(settings.path(cfg.path or ""))


def _derive_as_of(staged: dict[str, pd.DataFrame]) -> pd.Timestamp | None:
    """`features.clock.derive_as_of` over every staged row, as a full ingest derives it (exact duplicate
    rows count once: ingest drops them before)."""
    stamps = {}
    for name, columns in ACTIVITY_TIMESTAMPS.items():
        frame = staged.get(name)
        if frame is None:
            continue
        frame = frame[~frame["_hash"].duplicated()]
        for column in columns:
            if f"_ts_{column}" in frame:
                stamps[f"{name}.{column}"] = pd.to_datetime(frame[f"_ts_{column}"], utc=True)
    return derive_as_of(stamps)


def _match_rules(identity_map: pd.DataFrame) -> dict[str, int]:
    counts = identity_map["match_rule"].value_counts()  # Arrow text: no Python strings
    return {str(k): int(v) for k, v in counts[counts > 0].items()}


_ARROW_TEXT = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}


def _isin(values: pd.Series, wanted: Any) -> np.ndarray:
    """`values.isin(wanted)` for text, in Arrow (pandas turns Arrow text into Python objects first)."""
    found = pc.is_in(
        pa.array(values, type=pa.large_string()), value_set=pa.array(wanted, type=pa.large_string())
    )
    return found.to_numpy(zero_copy_only=False).astype(bool)


def _load(settings: Settings, name: str) -> pd.DataFrame | None:
    """A clean table with arrow-backed text (`load_clean` makes Python strings: slow at millions of
    rows); None when it was not written (an absent optional source)."""
    path = clean_dir(settings) / f"{name}.parquet"
    if not path.is_file():
        return None
    return pq.read_table(path).to_pandas(types_mapper=_ARROW_TEXT.get)


def _merge(
    settings: Settings,
    result: IngestResult,
    staged: dict[str, pd.DataFrame],
    subset: dict[str, RawTable | None],
    changes: dict[str, _Change],
) -> tuple[dict[str, pd.DataFrame | None], int]:
    """The clean tables with the re-ingested persons' rows replaced (see module doc, 4.); returns them
    and the number of persons re-ingested."""
    old_map = _load(settings, "identity_map")
    assert old_map is not None
    new_customers = result.tables["customers"]
    assert new_customers is not None
    # the persons the re-ingested rows belonged to before: each must be re-ingested whole
    rows = {
        name: table.frame.assign(_row=table.frame.index.to_numpy())
        for name, table in subset.items()
        if table is not None
    }
    removed = {name: change.removed for name, change in changes.items() if len(change.removed)}
    wanted = [
        pd.DataFrame({"source": name, "id": _record_ids(name, frame, getattr(settings.sources, name))})
        for part in (rows, removed)
        for name, frame in part.items()
    ]
    records = pd.concat(wanted, ignore_index=True).dropna()
    key = old_map["source"] + "\x1f" + old_map["source_record_id"]
    wanted_keys = (records["source"] + "\x1f" + records["id"].astype("string[pyarrow]")).unique()
    mine = _isin(key, pd.Series(wanted_keys).dropna())
    old_ids = pd.Index(old_map.loc[mine, "customer_id"].dropna().unique())
    whole = int(_isin(old_map["customer_id"], old_ids.astype(str)).sum())
    if whole != int(mine.sum()):
        raise _NeedsFull("a person's rows were not all among the rows to re-ingest")
    drop = old_ids.union(pd.Index(new_customers["customer_id"].astype(str))).astype(str)
    merged: dict[str, pd.DataFrame | None] = {}
    for name in PERSON_TABLES:
        old = _load(settings, name)
        new = result.frame(name) if name in result.tables else None
        if old is None and new is None:
            merged[name] = None
            continue
        parts = []
        if old is not None:
            parts.append(old[~_isin(old["customer_id"], drop)])
        if new is not None:
            categorical = [c for c in new.columns if isinstance(new[c].dtype, pd.CategoricalDtype)]
            parts.append(new.astype(dict.fromkeys(categorical, "string[pyarrow]")))
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
        if name in SORT_KEYS:
            frame = frame.sort_values(SORT_KEYS[name], kind="stable").reset_index(drop=True)
        merged[name] = frame
    quarantine = _load(settings, "quarantine")
    assert quarantine is not None
    redone = pd.concat(
        [
            pd.DataFrame({"source": name, "row": frame["_row"].to_numpy(dtype="int64") + 1})
            for part in (rows, removed)
            for name, frame in part.items()
        ],
        ignore_index=True,
    )
    key = quarantine["source"].astype(str) + "\x1f" + quarantine["row"].astype(str)
    kept = quarantine[~key.isin(redone["source"] + "\x1f" + redone["row"].astype(str)).to_numpy()]
    fresh = result.tables["quarantine"]
    merged["quarantine"] = (
        pd.concat([kept, fresh], ignore_index=True)
        .sort_values(["source", "row", "column", "rule"], kind="stable")
        .reset_index(drop=True)
    )
    return merged, len(new_customers)

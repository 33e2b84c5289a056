"""Persona's door to Feast: build the store from settings, apply the repo, materialize, read features.

Training and serving call only this module. Feature lists live in the FeatureServices of
`feature_repo/services.py`; nothing here names a feature. Feast (about 5 s to import) is imported inside
functions: this module is also imported by work that never opens a store (`persona features build`,
`persona tags list` through artifacts.catalog, the service's supervisor process).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from configs.settings import PROJECT_ROOT, Settings
from core.errors import FeatureStoreError
from core.progress import track
from features.materialize import write_view
from features.online_decode import (
    Blobs,
    as_column,
    numeric_column,
    object_column,
    parse_value,
    scalar,
    timestamp_seconds,
)

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.repo_contents import RepoContents

ENTITY_KEY = "customer_id"
TIMESTAMP = "event_timestamp"
APPLY_HINT = "run `persona features apply` (after `persona features build`)"
BUILD_HINT = "run `persona features build` first"
# Orders are the only required source (docs/CONTRACTS.md): without this table there is nothing to serve.
REQUIRED_TABLES = ("customer_transactions",)
_ROW = "__persona_row"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class MaterializeStats:
    """What one `materialize` call wrote to the online store."""

    rows_written: int  # entity rows written (latest value per customer and view in the interval)
    seconds: float
    per_view: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # views whose feature table does not exist
    end: datetime | None = None


@dataclass(frozen=True)
class OnlineResult:
    """Online features for a list of customers, in request order.

    `columns`: feature (bare name, service order) -> one numpy array over `ids`; numeric features are
    float64 (NaN when missing), strings object (None when missing). The serving hot path reads these.
    `values`: the same as a DataFrame (index `customer_id`), built on first access. `found`: True where
    any feature was found. `unknown_ids`: ids with no feature at all. `status` (same shape as `values`):
    `present | not_found | stale`, where stale means the value's snapshot is older than its view's
    TTL. `freshness`: index `customer_id`, one column per feature view, the snapshot time
    (`event_timestamp`, UTC) of the values served, NaT when not found. The frames are built on first
    access: the hot path pays only for what it reads.
    """

    columns: dict[str, np.ndarray]
    ids: list[str]
    found_mask: np.ndarray
    unknown_ids: list[str]
    _view_of: dict[str, str] = field(repr=False)
    _view_status: dict[str, np.ndarray] = field(repr=False)
    _view_seconds: dict[str, np.ndarray] = field(repr=False)

    @functools.cached_property
    def index(self) -> pd.Index:
        return pd.Index(self.ids, name=ENTITY_KEY)

    @functools.cached_property
    def values(self) -> pd.DataFrame:
        """One column per feature, index `customer_id` (a float block when every feature is numeric)."""
        names = list(self.columns)
        if names and all(self.columns[f].dtype == np.float64 for f in names):
            return pd.DataFrame(
                np.column_stack([self.columns[f] for f in names]), index=self.index, columns=names
            )
        if not self.ids:
            return pd.DataFrame(index=self.index, columns=names)
        return pd.DataFrame(self.columns, index=self.index, copy=False)

    @functools.cached_property
    def found(self) -> pd.Series:
        return pd.Series(self.found_mask, index=self.index, name="found", dtype=bool)

    @functools.cached_property
    def status(self) -> pd.DataFrame:
        """Per customer and feature: `present`, `not_found` or `stale`."""
        features = list(self.values.columns)
        grid = np.empty((len(self.values), len(features)), dtype=object)
        for column, name in enumerate(features):
            grid[:, column] = self._view_status[self._view_of[name]]
        return pd.DataFrame(grid, index=self.values.index, columns=features)

    @property
    def view_status(self) -> dict[str, np.ndarray]:
        """Per feature view: `present | not_found | stale` per customer (one array per view, cheap)."""
        return self._view_status

    @property
    def view_seconds(self) -> dict[str, np.ndarray]:
        """Per feature view: the served snapshot as epoch seconds per customer (-1: not found)."""
        return self._view_seconds

    @functools.cached_property
    def freshness(self) -> pd.DataFrame:
        """Per customer and feature view: the snapshot time of the values served (NaT: not found)."""
        return pd.DataFrame(
            {view: _seconds_to_utc(secs) for view, secs in self._view_seconds.items()},
            index=self.index,
        )


# ---------------------------------------------------------------------------------------------------
# Configuration


def repo_path(settings: Settings) -> Path:
    """The feature repo folder: absolute, or relative to the cwd, else to the project root."""
    configured = Path(settings.feast.repo_path)
    if configured.is_absolute() or configured.is_dir():
        return configured.resolve()
    return (PROJECT_ROOT / configured).resolve()


def source_dir(settings: Settings) -> Path:
    """Where `persona features build` writes the feature tables (the Feast sources)."""
    return settings.path(settings.feast.source_dir).resolve()


def repo_config(settings: Settings) -> Any:
    """A `feast.RepoConfig` built from `settings.feast` (what feature_store.yaml would say)."""
    from feast import RepoConfig
    from feast.repo_config import RegistryConfig

    cfg = settings.feast
    if "://" in cfg.registry:  # a SQLAlchemy URL: a shared SQL registry
        registry = RegistryConfig(
            registry_type="sql",
            path=settings.url(cfg.registry),
            cache_ttl_seconds=cfg.registry_cache_ttl_seconds,
        )
    else:
        registry = RegistryConfig(
            registry_type="file",
            path=str(settings.path(cfg.registry).resolve()),
            cache_ttl_seconds=cfg.registry_cache_ttl_seconds,
        )
    if cfg.online_store == "redis":
        online: dict[str, Any] = {"type": "redis", "connection_string": cfg.redis_connection_string}
    else:
        online = {"type": "sqlite", "path": str(settings.path(cfg.sqlite_path).resolve())}
    return RepoConfig(
        project=cfg.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store=offline_store_config(settings),
        entity_key_serialization_version=3,
        repo_path=repo_path(settings),
    )


def offline_store_config(settings: Settings) -> dict[str, Any]:
    """Feast's offline store for the configured engine (what `offline_store:` of feature_store.yaml says).

    `engine: duckdb`: Feast's DuckDB store, which keeps entity rows without a feature row in the TTL
    (the file store drops them). `engine: spark`: Feast's Spark store over the same parquet tables
    (SparkSource), its session built from `spark:` as `features/engine.py` builds the engine's, so
    one JVM serves both when they run in one process (Feast reuses the active session).
    """
    if settings.engine != "spark":
        return {"type": "duckdb"}
    from features.engine import spark_properties

    return {
        "type": "spark",
        "spark_conf": {"spark.master": settings.spark.master, **spark_properties(settings.spark)},
    }


def get_store(settings: Settings) -> FeatureStore:
    """A new `feast.FeatureStore` for these settings (no global state; reuse it for many reads)."""
    from feast import FeatureStore

    return FeatureStore(config=repo_config(settings), repo_path=str(repo_path(settings)))


def _as_store(store: FeatureStore | Settings) -> FeatureStore:
    # docs/CONTRACTS.md passes settings, the issue passes a store: accept both.
    return get_store(store) if isinstance(store, Settings) else store


def _ensure_local_dirs(settings: Settings) -> None:
    cfg = settings.feast
    if "://" not in cfg.registry:
        settings.path(cfg.registry).resolve().parent.mkdir(parents=True, exist_ok=True)
    if cfg.online_store == "sqlite":
        settings.path(cfg.sqlite_path).resolve().parent.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------------
# Apply


def load_definitions(settings: Settings) -> RepoContents:
    """Import the definitions in the feature repo afresh, with every source pointed at `source_dir`.

    Like `feast apply`, every top-level .py file not excluded by .feastignore is executed. Modules are
    removed from `sys.modules` afterwards so a second call (another data dir) gets new objects.
    """
    from feast.data_source import DataSource
    from feast.entity import Entity
    from feast.feature_service import FeatureService
    from feast.feature_view import DUMMY_ENTITY, FeatureView
    from feast.repo_contents import RepoContents
    from feast.repo_operations import get_repo_files

    root = repo_path(settings)
    if not root.is_dir():
        raise FeatureStoreError(f"feature repo folder not found: {root}", hint="check feast.repo_path")
    files = get_repo_files(root)
    nested = [f for f in files if f.parent != root]
    if nested:
        raise FeatureStoreError(
            f"feature repo {root}: definitions must be top-level files, found {nested[0]}",
            hint="move it up or list it in .feastignore",
        )
    names = [f.stem for f in files]
    contents = RepoContents(
        projects=[],
        data_sources=[],
        entities=[],
        feature_views=[],
        feature_services=[],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        permissions=[],
    )
    with _LOAD_LOCK:
        saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
        sys.path.insert(0, str(root))
        try:
            modules = []
            for name, path in zip(names, files, strict=True):
                try:
                    modules.append(importlib.import_module(name))
                except Exception as exc:
                    raise FeatureStoreError(
                        f"feature repo file {path} failed to load: {type(exc).__name__}: {exc}"
                    ) from exc
        finally:
            sys.path.remove(str(root))
            for name in names:
                sys.modules.pop(name, None)
            sys.modules.update(saved)

    def add(bucket: list[Any], obj: Any) -> None:
        if not any(obj is seen for seen in bucket):
            bucket.append(obj)

    for module in modules:
        for attr in dir(module):
            obj = getattr(module, attr)
            if isinstance(obj, FeatureView):
                add(contents.feature_views, obj)
                if obj.batch_source is not None:
                    add(contents.data_sources, obj.batch_source)
            elif isinstance(obj, DataSource):
                add(contents.data_sources, obj)
            elif isinstance(obj, Entity):
                add(contents.entities, obj)
            elif isinstance(obj, FeatureService):
                add(contents.feature_services, obj)
    contents.entities.append(DUMMY_ENTITY)

    # Same file name, folder from settings, and the source kind the engine's offline store reads: the
    # definitions run unchanged in any data dir and on either engine.
    folder = source_dir(settings)
    kinds: dict[int, DataSource] = {}
    for source in contents.data_sources:
        kinds[id(source)] = _offline_source(settings.engine, source, folder)
    for view in contents.feature_views:
        if view.batch_source is not None:
            view.batch_source = view.data_source = kinds[id(view.batch_source)]
    contents.data_sources[:] = kinds.values()
    return contents


def _offline_source(engine: str, source: Any, folder: Path) -> Any:
    """`source` (a parquet feature table) as the offline store of `engine` reads it: a FileSource for
    DuckDB, a SparkSource over the same parquet file for Spark, at `folder` / its file name."""
    from feast import FileSource
    from feast.data_format import ParquetFormat

    path = str(folder / Path(source.path).name)
    common = {
        "name": source.name,
        "timestamp_field": source.timestamp_field,
        "created_timestamp_column": source.created_timestamp_column,
        "field_mapping": source.field_mapping,
        "description": source.description,
        "tags": source.tags,
        "owner": source.owner,
    }
    if engine == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(path=path, file_format="parquet", **common)
    if isinstance(source, FileSource):
        source.file_options.uri = path
        return source
    return FileSource(path=path, file_format=ParquetFormat(), **common)


def check_feature_tables(settings: Settings, contents: RepoContents) -> list[str]:
    """Check each view's parquet file has the view's columns; return the views whose file is absent.

    Raises FeatureStoreError naming the file and column when a required table is missing, a column is
    missing, or timestamps are not `timestamp[us, UTC]`-compatible.
    """

    missing = []
    for view in contents.feature_views:
        path = Path(view.batch_source.path)
        if not path.is_file():
            if view.name in REQUIRED_TABLES:
                raise FeatureStoreError(f"feature table not found: {path}", hint=BUILD_HINT)
            missing.append(view.name)
            continue
        try:
            schema = pq.read_schema(path)
        except Exception as exc:
            raise FeatureStoreError(f"feature table {path} is not readable parquet: {exc}") from exc
        needed = [ENTITY_KEY, TIMESTAMP, *(f.name for f in view.schema if f.name != ENTITY_KEY)]
        absent = [c for c in needed if c not in schema.names]
        if absent:
            raise FeatureStoreError(
                f"feature table {path}: column {absent[0]!r} missing (view {view.name!r} expects "
                f"{', '.join(absent)})",
                hint="rebuild with `persona features build` or fix feature_repo/views.py",
            )
        ts_type = schema.field(TIMESTAMP).type
        if str(ts_type).startswith("timestamp[ns"):
            raise FeatureStoreError(
                f"feature table {path}: column {TIMESTAMP!r} is {ts_type}; DuckDB materialization "
                "needs microseconds",
                hint="write timestamps as datetime64[us, UTC]",
            )
    return missing


def apply_repo(settings: Settings) -> None:
    """Register the entity, views and services of the feature repo (like `feast apply`).

    Objects removed from the repo are removed from the registry. Tables of optional sources may be
    absent (their views are registered and skipped by `materialize`).
    """
    from feast.repo_operations import extract_objects_for_apply_delete

    contents = load_definitions(settings)
    check_feature_tables(settings, contents)
    _ensure_local_dirs(settings)
    store = get_store(settings)
    try:
        to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
            settings.feast.project, store.registry, contents
        )
        with contextlib.redirect_stdout(io.StringIO()):  # Feast prints coloured progress to stdout
            store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    except FeatureStoreError:
        raise
    except Exception as exc:
        raise FeatureStoreError(
            f"feast apply failed (registry {settings.feast.registry}): {type(exc).__name__}: {exc}",
            hint="check the registry location in feast.registry is writable",
        ) from exc


# ---------------------------------------------------------------------------------------------------
# Materialize


def _check_source_kind(store: FeatureStore, view: Any) -> None:
    """Views are applied with the source kind of the engine (`_offline_source`); a registry applied
    under the other engine cannot be read by this offline store."""
    applied = "spark" if type(view.batch_source).__name__ == "SparkSource" else "duckdb"
    configured = "spark" if getattr(store.config.offline_store, "type", "") == "spark" else "duckdb"
    if applied != configured:
        raise FeatureStoreError(
            f"feature view {view.name!r} was applied for engine: {applied}, and engine: {configured} is "
            "configured",
            hint=f"run `persona features apply` under engine: {configured}",
        )


def _utc(moment: datetime) -> datetime:
    # Naive datetimes are taken as UTC, as Feast does.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def materialize(
    settings: Settings,
    *,
    end: datetime | None = None,
    progress: bool = False,
    full: bool = False,
) -> MaterializeStats:
    """Copy the latest feature values up to `end` (default: the data's `as_of` recorded with the feature
    tables) into the online store, incrementally. The registry then records `end` as each view's
    materialized end: the `as_of` serving judges staleness against (`materialized_as_of`).

    Each view continues from where its last materialization ended. A view never materialized starts
    at the beginning of its table (not at now - TTL as Feast would), so a customer's last snapshot is
    served, and flagged stale, even when it is older than the TTL. `full` starts every view at the
    beginning again: for a new or emptied online store (switching SQLite -> Redis keeps the registry,
    which would otherwise say everything is done) and after historical snapshots were rebuilt.
    """

    _ensure_local_dirs(settings)
    store = get_store(settings)
    try:
        views = store.list_feature_views()
    except Exception as exc:
        raise FeatureStoreError(
            f"Feast registry unreadable ({settings.feast.registry}): {type(exc).__name__}: {exc}",
            hint=APPLY_HINT,
        ) from exc
    if not views:
        raise FeatureStoreError(f"no feature views registered in {settings.feast.registry}", hint=APPLY_HINT)
    if end is None:
        from features.clock import features_as_of

        end = features_as_of(settings).to_pydatetime()
    end = _utc(end)

    staging = settings.data_dir.resolve() / "tmp" / "materialize"  # Spark's latest rows, read back
    started = time.perf_counter()
    per_view: dict[str, int] = {}
    skipped: list[str] = []
    items = track(views, total=len(views), description="materializing") if progress else views
    for view in items:
        path = Path(view.batch_source.path)
        if not path.is_file():
            if view.name in REQUIRED_TABLES:
                raise FeatureStoreError(f"feature table not found: {path}", hint=BUILD_HINT)
            skipped.append(view.name)
            continue
        _check_source_kind(store, view)
        previous_end = None if full else view.most_recent_end_time
        if previous_end is not None and previous_end.astimezone(UTC) > end:
            previous_end = None  # the data's clock went back (a rebuilt history): reload from the start
        start = _EPOCH if previous_end is None else previous_end.astimezone(UTC)
        if start >= end:
            per_view[view.name] = 0
            continue
        try:
            # Batched, bounded memory, byte-identical online rows to Feast's own materialize.
            rows = write_view(store, view, start=start, end=end, staging=staging).rows
        except Exception as exc:
            raise FeatureStoreError(
                f"materializing view {view.name!r} from {path} failed: {type(exc).__name__}: {exc}",
                hint="rebuild the feature tables, then `persona features apply`",
            ) from exc
        per_view[view.name] = rows
    return MaterializeStats(
        rows_written=sum(per_view.values()),
        seconds=time.perf_counter() - started,
        per_view=per_view,
        skipped=skipped,
        end=end,
    )


# ---------------------------------------------------------------------------------------------------
# Services


def _feature_service(store: FeatureStore, service: str) -> FeatureService:
    try:
        return store.get_feature_service(service, allow_cache=True)
    except Exception as exc:
        known = ""
        with contextlib.suppress(Exception):
            known = ", ".join(sorted(s.name for s in store.list_feature_services()))
        raise FeatureStoreError(
            f"feature service {service!r} not found in the Feast registry"
            + (f" (registered: {known})" if known else f" ({type(exc).__name__})"),
            hint=APPLY_HINT,
        ) from exc


def service_features(store: FeatureStore | Settings, service: str) -> list[str]:
    """Bare feature names of a FeatureService, in service order (views, then features)."""
    fs = _feature_service(_as_store(store), service)
    return [feat.name for projection in fs.feature_view_projections for feat in projection.features]


def missing_tables(store: FeatureStore | Settings, service: str) -> list[str]:
    """The views of a FeatureService whose feature table was not built (its source is absent)."""
    store = _as_store(store)
    fs = _feature_service(store, service)
    return [
        p.name
        for p in fs.feature_view_projections
        if not Path(_view(store, p.name).batch_source.path).is_file()
    ]


def first_usable_service(store: FeatureStore | Settings, services: Sequence[str]) -> tuple[str | None, dict]:
    """The first of `services` whose feature tables all exist, and for each one passed over, the views
    it lacks: the sources present decide which features a model is trained on."""
    store = _as_store(store)
    lacking: dict[str, list[str]] = {}
    for service in services:
        missing = missing_tables(store, service)
        if not missing:
            return service, lacking
        lacking[service] = missing
    return None, lacking


def service_views(store: FeatureStore | Settings, service: str) -> dict[str, list[str]]:
    """View name -> bare feature names, for a FeatureService (service order)."""
    fs = _feature_service(_as_store(store), service)
    return {p.name_to_use(): [f.name for f in p.features] for p in fs.feature_view_projections}


# ---------------------------------------------------------------------------------------------------
# Offline: training sets


def _check_entity_df(entity_df: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    for column in (ENTITY_KEY, TIMESTAMP):
        if column not in entity_df.columns:
            raise FeatureStoreError(
                f"entity frame: column {column!r} missing (has {', '.join(map(str, entity_df.columns))})"
            )
    clash = [c for c in entity_df.columns if c in features]
    if clash:
        raise FeatureStoreError(f"entity frame: column {clash[0]!r} has the name of a feature; rename it")
    for column in (ENTITY_KEY, TIMESTAMP):
        nulls = np.flatnonzero(entity_df[column].isna().to_numpy())
        if len(nulls):
            raise FeatureStoreError(f"entity frame: row {int(nulls[0])} has no {column}")
    try:
        stamps = pd.to_datetime(entity_df[TIMESTAMP], utc=True)
    except (ValueError, TypeError) as exc:
        raise FeatureStoreError(f"entity frame: column {TIMESTAMP!r} is not a timestamp: {exc}") from exc
    return pd.DataFrame(
        {
            ENTITY_KEY: entity_df[ENTITY_KEY].astype(str).to_numpy(),
            # Naive timestamps are taken as UTC; microseconds, like the feature tables.
            TIMESTAMP: stamps.astype("datetime64[us, UTC]").reset_index(drop=True),
            _ROW: np.arange(len(entity_df), dtype=np.int64),
        }
    )


def training_frame(
    store: FeatureStore | Settings,
    *,
    entity_df: pd.DataFrame,
    service: str,
) -> pd.DataFrame:
    """`entity_df` (customer_id, event_timestamp, labels...) with the service's features as of each row.

    Point in time: a row at time t gets the latest snapshot with event_timestamp <= t and within the
    view's TTL; otherwise the features are null. Every row comes back, in the original order and with
    the original index and columns first, then the features (bare names, service order).
    """
    store = _as_store(store)
    fs = _feature_service(store, service)
    features = [f.name for p in fs.feature_view_projections for f in p.features]
    query = _check_entity_df(entity_df, features)
    for projection in fs.feature_view_projections:
        view = store.get_feature_view(projection.name, allow_registry_cache=True)
        _check_source_kind(store, view)
        path = Path(view.batch_source.path)
        if not path.is_file():
            raise FeatureStoreError(
                f"service {service!r} needs feature table {path} (view {view.name!r}), which does not exist",
                hint=f"{BUILD_HINT}; if its source is absent, use a service without view {view.name!r}",
            )
    if query.empty:
        out = entity_df.copy()
        for name in features:
            out[name] = pd.Series(dtype="float64")
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # ibis on duckdb 2.0, not ours to fix
            retrieved = store.get_historical_features(
                entity_df=query, features=fs, full_feature_names=False
            ).to_df()
    except FeatureStoreError:
        raise
    except Exception as exc:
        raise FeatureStoreError(
            f"historical retrieval for service {service!r} failed: {type(exc).__name__}: {exc}",
            hint="check the feature tables exist (`persona features build`) and the repo is applied",
        ) from exc
    if len(retrieved) != len(query) or retrieved[_ROW].duplicated().any():
        raise FeatureStoreError(
            f"historical retrieval for service {service!r} returned {len(retrieved)} rows for "
            f"{len(query)} entity rows (duplicate snapshots for one customer in a feature table?)"
        )
    retrieved = retrieved.sort_values(_ROW, kind="stable").reset_index(drop=True)
    out = entity_df.copy()
    for name in features:
        out[name] = retrieved[name].to_numpy()
    return out


# ---------------------------------------------------------------------------------------------------
# Online: serving


def online_features(
    store: FeatureStore | Settings,
    *,
    customer_ids: list[str],
    service: str | Sequence[str],
    as_of: datetime | None = None,
) -> OnlineResult:
    """Latest materialized features for `customer_ids` (request order). Unknown ids are reported.

    `service` may be several FeatureServices: their features are read in ONE online read (each view
    once, even when services share it), the way serving needs them for several models.
    `as_of` decides staleness: a value whose snapshot is older than its view's TTL before `as_of` is
    `stale` (still returned; the caller decides). Default: the data's clock the views were materialized
    at (`materialized_as_of`), never the wall clock. The registry is read from Feast's cache.
    """

    store = _as_store(store)
    if isinstance(service, str):
        plan = _service_plan(store, service)
    else:
        plan = _merged_plan(store, tuple(service))
        service = "+".join(service)
    view_of, ttl_of = plan.view_of, plan.ttl_of
    ids = [str(c) for c in customer_ids]
    features = list(view_of)
    if not ids:
        nothing = np.array([], dtype=np.int64)
        return OnlineResult(
            columns={f: np.array([], dtype=np.float64 if f in plan.numeric else object) for f in features},
            ids=[],
            found_mask=np.array([], dtype=bool),
            unknown_ids=[],
            _view_of=view_of,
            _view_status={view: nothing.astype(object) for view in ttl_of},
            _view_seconds={view: nothing for view in ttl_of},
        )
    # Each view is read once for all customers (SQLite: one query per view; Redis: one pipeline of one
    # HMGET per customer for every view) and each feature's values are decoded as one column
    # (features.online_decode): `get_online_features` would rebuild a response proto per value and
    # convert every timestamp again. Other stores go through Feast's `online_read`. TTLs are applied
    # below (stale), as documented.
    features_of: dict[str, list[str]] = {}
    for name, view in view_of.items():
        features_of.setdefault(view, []).append(name)
    try:
        kind = getattr(store.config.online_store, "type", "")
        read = {"sqlite": _read_sqlite, "redis": _read_redis}.get(kind, _read_provider)
        raw_of = read(store, plan, features_of, ids)
    except Exception as exc:
        raise FeatureStoreError(
            f"online read for service {service!r} failed: {type(exc).__name__}: {exc}",
            hint="check the online store is reachable and `persona features materialize` has run",
        ) from exc

    if as_of is None:
        as_of = plan.materialized_end
    now_s = float("inf") if as_of is None else _utc(as_of).timestamp()  # never materialized: nothing read
    n = len(ids)
    values: dict[str, np.ndarray] = {}
    view_status: dict[str, np.ndarray] = {}
    view_seconds: dict[str, np.ndarray] = {}
    any_found = np.zeros(n, dtype=bool)
    for view in features_of:
        seconds, columns = raw_of[view]
        found = seconds > 0
        seconds[~found] = -1
        stale = np.zeros(n, dtype=bool)
        ttl = ttl_of[view]
        if ttl is not None and ttl.total_seconds() > 0:
            stale = found & (seconds < now_s - ttl.total_seconds())
        view_status[view] = np.where(stale, "stale", np.where(found, "present", "not_found"))
        view_seconds[view] = seconds
        any_found |= found
        values.update(columns)
    values = {name: values[name] for name in features}  # service order
    return OnlineResult(
        columns=values,
        ids=ids,
        found_mask=any_found,
        unknown_ids=[i for i, hit in zip(ids, any_found, strict=True) if not hit],
        _view_of=view_of,
        _view_status=view_status,
        _view_seconds=view_seconds,
    )


# (epoch seconds per id, -1 or 0 = none; feature -> column: float64 with NaN for numeric features,
# what models take, else object with None)
_RawView = tuple[np.ndarray, dict[str, np.ndarray]]


def _entity_keys(ids: list[str]) -> list[Any]:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return [EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=i)]) for i in ids]


def _serialized_keys(store: FeatureStore, ids: list[str]) -> list[bytes]:
    """Feast's serialized entity key of each id: a fixed prefix, the value's length, its UTF-8 bytes.
    Feast's serializer builds a proto per id (a sixth of a 1,000-customer read); the layout is taken
    from it and checked on a probe, and Feast's own serializer is used if it ever differs."""
    prefix = _key_prefix(store.config.entity_key_serialization_version)
    if prefix is None:
        from feast.infra.key_encoding_utils import serialize_entity_key

        version = store.config.entity_key_serialization_version
        return [serialize_entity_key(k, entity_key_serialization_version=version) for k in _entity_keys(ids)]
    encoded = [i.encode("utf-8") for i in ids]
    return [prefix + len(b).to_bytes(4, "little") + b for b in encoded]


@functools.cache
def _key_prefix(version: int) -> bytes | None:
    from feast.infra.key_encoding_utils import serialize_entity_key

    empty, probe = (
        serialize_entity_key(k, entity_key_serialization_version=version) for k in _entity_keys(["", "Pé1"])
    )
    prefix = empty[:-4]
    same = empty == prefix + bytes(4) and probe == prefix + (4).to_bytes(4, "little") + "Pé1".encode()
    return prefix if same else None


def _column(plan: _ServicePlan, name: str, blobs: Blobs, n: int) -> np.ndarray:
    return numeric_column(blobs, n) if name in plan.numeric else object_column(blobs, n)


def _read_provider(
    store: FeatureStore, plan: _ServicePlan, features_of: dict[str, list[str]], ids: list[str]
) -> dict[str, _RawView]:
    """Any online store, through Feast's `online_read` (its OnlineStore interface, the call
    `get_online_features` makes): one ValueProto per value, one datetime per row."""
    keys = _entity_keys(ids)
    provider, config = store.provider, store.config
    out: dict[str, _RawView] = {}
    for view, names in features_of.items():
        # a copy: Feast's Redis store appends its timestamp field to the list it is given
        rows = provider.online_read(
            config=config, table=plan.tables[view], entity_keys=keys, requested_features=list(names)
        )
        # A row exists where the store returned a timestamp after the epoch: Feast's Redis store
        # answers an unknown key with empty values and timestamp 0.
        seconds = np.array(
            [-1 if ts is None else int(_utc(ts).timestamp()) for ts, _ in rows], dtype=np.int64
        )
        dicts = [d if sec > 0 else None for (_, d), sec in zip(rows, seconds, strict=True)]
        columns: dict[str, np.ndarray] = {}
        for name in names:
            column = [None if d is None else scalar(d.get(name)) for d in dicts]
            if name in plan.numeric:
                columns[name] = np.array([np.nan if v is None else v for v in column], dtype=np.float64)
            else:
                columns[name] = np.array(column, dtype=object)
        out[view] = (seconds, columns)
    return out


# The request's ids are a VALUES list carrying their position (repeated ids included); `+feature_name`
# keeps SQLite on the entity-key index (one seek per customer, not one per customer and feature).
_SQLITE_ROWS = (
    "WITH q(pos, k) AS (VALUES {ids}) "
    "SELECT q.pos, t.feature_name, t.value, CAST(t.event_ts AS INTEGER) "
    "FROM q JOIN {table} t ON t.entity_key = q.k WHERE +t.feature_name IN ({names})"
)
# The same rows handed back one per feature: positions, sizes and timestamps packed as fixed-width hex,
# the values' bytes as hex. Four Python objects per (customer, feature) row were then most of a bulk
# read; grouping costs SQLite about 0.1 ms a query, more than it saves for a few customers.
_SQLITE_COLUMNS = (
    "WITH q(pos, k) AS (VALUES {ids}) "
    "SELECT t.feature_name, "
    "group_concat(printf('%08x%08x%016x', q.pos, length(t.value), CAST(t.event_ts AS INTEGER)), ''), "
    "group_concat(hex(t.value), '') "
    "FROM q JOIN {table} t ON t.entity_key = q.k WHERE +t.feature_name IN ({names}) "
    "GROUP BY t.feature_name"
)
_SQLITE_META = np.dtype([("pos", ">u4"), ("length", ">u4"), ("ts", ">i8")])  # 32 hex digits a row
_SQLITE_COLUMNS_FROM = 32  # customers in one request
_SQLITE_IDS_PER_QUERY = 10_000  # well under SQLite's 32,766 bound variables
# A bulk read touches pages all over the file: memory-mapped, SQLite reads them in place instead of
# copying each through its 2 MB page cache with a read() call (one 1,000-customer query: ~110 -> ~65 ms,
# ad hoc, load 8). Reads only; Feast's writes are unchanged. The mapped pages are the OS's file cache,
# shared by the workers (RSS counts them in each). Set once per connection (ids: a connection cannot be
# weakly referenced; a reused id only means a later connection reads without the map).
_SQLITE_MMAP_BYTES = 1 << 30
_SQLITE_MAPPED: set[int] = set()


def _read_sqlite(
    store: FeatureStore, plan: _ServicePlan, features_of: dict[str, list[str]], ids: list[str]
) -> dict[str, _RawView]:
    """Feast's SQLite online store read directly: one query per view for every customer, only the
    features asked for, the timestamp as the epoch integer it is stored as, each feature decoded as one
    column. Feast's own `online_read` reads every feature of the view and converts each row's timestamp
    to a datetime in Python. Same table, key encoding and connection as Feast's."""
    from feast.infra.online_stores.sqlite import _quote_id, _table_id

    config = store.config
    keys = _serialized_keys(store, ids)
    n = len(keys)
    grouped = n >= _SQLITE_COLUMNS_FROM
    online = store.provider.online_store
    conn = online._get_conn(config)
    if grouped and id(conn) not in _SQLITE_MAPPED:
        conn.execute(f"PRAGMA mmap_size={_SQLITE_MMAP_BYTES}")
        _SQLITE_MAPPED.add(id(conn))
    versioning = config.registry.enable_online_feature_view_versioning

    def query(view: str, names: list[str], conn: Any) -> list[tuple[Any, ...]]:
        table = _quote_id(_table_id(config.project, plan.tables[view], versioning))
        results: list[tuple[Any, ...]] = []
        for start in range(0, n, _SQLITE_IDS_PER_QUERY):
            chunk = keys[start : start + _SQLITE_IDS_PER_QUERY]
            sql = (_SQLITE_COLUMNS if grouped else _SQLITE_ROWS).format(
                ids=",".join(f"({start + i},?)" for i in range(len(chunk))),
                table=table,
                names=",".join("?" * len(names)),
            )
            results += conn.execute(sql, [*chunk, *names]).fetchall()
        return results

    fetched: dict[str, Any] = {}
    if grouped and len(features_of) > 1:
        # SQLite lets go of the interpreter lock while it executes: the views are split in two halves
        # by feature count, one read here on Feast's connection, the other at the same time on a
        # second core by the reader thread on its own connection to the same file.
        here, there = _halves(features_of)
        path = online._get_db_path(config)
        fetched = {
            view: _SQLITE_READER.submit(lambda v=view: query(v, features_of[v], _reader_conn(path, conn)))
            for view in there
        }
        fetched.update({view: query(view, features_of[view], conn) for view in here})
    out: dict[str, _RawView] = {}
    for view, names in features_of.items():
        got = fetched.get(view)
        results = query(view, names, conn) if got is None else got if isinstance(got, list) else got.result()
        if not grouped:
            out[view] = _sqlite_few(plan, results, names, n)
            continue
        index = {name: i for i, name in enumerate(names)}
        at, feature, lengths, stamps, data = _sqlite_columns(results, index)
        seconds = np.full(n, -1, dtype=np.int64)
        seconds[at] = stamps  # Feast writes every feature of a row with the row's timestamp
        out[view] = (seconds, _view_columns(plan, names, n, at, feature, lengths, data))
    return out


def _view_columns(
    plan: _ServicePlan,
    names: list[str],
    n: int,
    at: np.ndarray,
    feature: np.ndarray,
    lengths: np.ndarray,
    data: bytes,
) -> dict[str, np.ndarray]:
    """The columns of one view's values (value i: customer `at[i]`, feature `names[feature[i]]`, its bytes
    `lengths[i]` long, in order in `data`). The numeric features are decoded together, as one (feature,
    customer) matrix: one `numeric_column` pass per view instead of one per feature, whose fixed cost of
    a dozen numpy calls was most of the decoding of a 1,000-customer read."""
    starts = np.cumsum(lengths) - lengths
    numeric = np.fromiter((name in plan.numeric for name in names), dtype=bool, count=len(names))
    matrix = None
    if numeric.any():
        mine = numeric[feature]
        flat = feature[mine] * n + at[mine]  # row-major (feature, customer) position of each value
        matrix = numeric_column(Blobs(data, starts[mine], lengths[mine], flat), len(names) * n)
        matrix = matrix.reshape(len(names), n)
    strings: dict[str, np.ndarray] = {}
    if not numeric.all():
        order = np.argsort(feature, kind="stable")
        ends = np.cumsum(np.bincount(feature, minlength=len(names))).tolist()
        for i, name in enumerate(names):
            if not numeric[i]:
                part = order[(ends[i - 1] if i else 0) : ends[i]]
                strings[name] = object_column(Blobs(data, starts[part], lengths[part], at[part]), n)
    return {
        name: matrix[i] if numeric[i] else strings[name]  # type: ignore[index]
        for i, name in enumerate(names)
    }


def _halves(features_of: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """The views in two groups of about equal feature counts (the rows a bulk read fetches), largest first."""
    here: list[str] = []
    there: list[str] = []
    sizes = [0, 0]
    for view in sorted(features_of, key=lambda v: -len(features_of[v])):
        side = 0 if sizes[0] <= sizes[1] else 1
        (here, there)[side].append(view)
        sizes[side] += len(features_of[view])
    return here, there


# One thread reads the second half of a bulk read's views (a second core; more would only queue on two).
_SQLITE_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
_READER_CONN: dict[str, Any] = {}  # the reader thread's connection and what it was opened for


def _reader_conn(path: str, feast_conn: Any) -> Any:
    """The reader thread's own connection to Feast's database file (it only reads), memory-mapped too.
    Opened again when the file was replaced or Feast opened a new connection (after a failed read), so
    it never reads a file Feast no longer reads."""
    import os
    import sqlite3

    stat = os.stat(path)
    key = (path, stat.st_dev, stat.st_ino, id(feast_conn))
    if _READER_CONN.get("key") != key:
        old = _READER_CONN.pop("conn", None)
        if old is not None:
            old.close()
        conn = sqlite3.connect(path, check_same_thread=False)  # only ever SELECTs
        conn.execute(f"PRAGMA mmap_size={_SQLITE_MMAP_BYTES}")
        _READER_CONN.update(key=key, conn=conn)
    return _READER_CONN["conn"]


_SqliteValues = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bytes]  # position, feature,
# size, timestamp of each value, and the values' bytes joined


def _sqlite_few(plan: _ServicePlan, rows: list[tuple[Any, ...]], names: list[str], n: int) -> _RawView:
    """A few customers' rows, one value at a time: numpy's fixed cost per call would exceed the work."""
    seconds = np.full(n, -1, dtype=np.int64)
    values: dict[str, list[Any]] = {name: [None] * n for name in names}
    for position, name, blob, stamp in rows:
        seconds[position] = stamp
        values[name][position] = parse_value(blob)
    return seconds, {name: as_column(values[name], numeric=name in plan.numeric) for name in names}


def _sqlite_columns(rows: list[tuple[Any, ...]], index: dict[str, int]) -> _SqliteValues:
    meta = np.frombuffer(bytes.fromhex("".join(m or "" for _, m, _ in rows)), dtype=_SQLITE_META)
    counts = [len(m or "") // 32 for _, m, _ in rows]
    return (
        meta["pos"].astype(np.int64),
        np.repeat(np.array([index[name] for name, _, _ in rows], dtype=np.int64), counts),
        meta["length"].astype(np.int64),
        meta["ts"].astype(np.int64),
        bytes.fromhex("".join(v or "" for _, _, v in rows)),
    )


def _read_redis(
    store: FeatureStore, plan: _ServicePlan, features_of: dict[str, list[str]], ids: list[str]
) -> dict[str, _RawView]:
    """Feast's Redis online store read directly: one hash per customer holds every view's fields
    (`mmh3("<view>:<feature>")` and `_ts:<view>`), so one HMGET per distinct customer fetches every view
    at once, all in one pipeline (Feast's own `_read_hash_fields`: redis-py or GLIDE, as configured).
    Then each feature is decoded as one column. Feast's `online_read` sends one HMGET per customer and
    view and parses every value and timestamp into a proto and a datetime."""
    from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name

    config = store.config
    versioning = config.registry.enable_online_feature_view_versioning
    project = config.project.encode("utf-8")
    keys = [key + project for key in _serialized_keys(store, ids)]
    first: dict[bytes, int] = {}
    for key in keys:
        first.setdefault(key, len(first))
    where = np.fromiter((first[k] for k in keys), dtype=np.int64, count=len(keys))  # row of each id
    fields: list[str | bytes] = []
    for view, names in features_of.items():
        stored_as = compute_versioned_name(plan.tables[view], versioning)
        fields += [_mmh3(f"{stored_as}:{name}") for name in names]
        fields.append(f"_ts:{stored_as}")
    replies = store.provider.online_store._read_hash_fields(config, [(key, fields) for key in first])
    by_field = list(zip(*replies, strict=True))
    m = len(first)
    out: dict[str, _RawView] = {}
    at = 0
    for view, names in features_of.items():
        seconds = timestamp_seconds(Blobs.from_list(by_field[at + len(names)]), m)
        # As Feast's `online_read` (then ours) reads a hash: no timestamp after the epoch, no row.
        missing = seconds <= 0
        columns = {}
        for j, name in enumerate(names):
            column = _column(plan, name, Blobs.from_list(by_field[at + j]), m)
            column[missing] = np.nan if column.dtype == np.float64 else None
            columns[name] = column[where]
        out[view] = (seconds[where], columns)
        at += len(names) + 1
    return out


def _materialized_end(views: Iterable[Any]) -> datetime | None:
    ends = [v.most_recent_end_time for v in views if getattr(v, "most_recent_end_time", None) is not None]
    return max(_utc(e) for e in ends) if ends else None


def materialized_as_of(store: FeatureStore | Settings, services: Sequence[str]) -> datetime | None:
    """The data's clock of what the online store holds for `services`: the latest end the views were
    materialized up to (`materialize` ends at the feature tables' `as_of`). None if never materialized."""
    store = _as_store(store)
    return _merged_plan(store, tuple(services)).materialized_end


def view_ttls(store: FeatureStore | Settings, services: Sequence[str]) -> dict[str, timedelta | None]:
    """Each feature view read by `services` and its TTL (the age after which its values are stale)."""
    return dict(_merged_plan(_as_store(store), tuple(services)).ttl_of)


@dataclass(frozen=True)
class _ServicePlan:
    view_of: dict[str, str]  # feature -> view, in service order
    numeric: frozenset[str]  # features served as float64
    tables: dict[str, Any]  # view (name used) -> Feast FeatureView

    @property
    def ttl_of(self) -> dict[str, timedelta | None]:
        return {view: table.ttl for view, table in self.tables.items()}

    @functools.cached_property
    def materialized_end(self) -> datetime | None:
        # a plan lives for one registry snapshot, and materializing writes a new one
        return _materialized_end(self.tables.values())


def _snapshot(store: FeatureStore) -> int:
    """Identifies the registry snapshot Feast has cached: plans are valid for one snapshot."""
    return id(getattr(store.registry, "cached_registry_proto", None))


# Per store: (service, registry snapshot) -> plan. Reading a service or view from Feast's registry
# cache deserializes protos (about 2 ms each), four times the cost of the online read itself.
_PLANS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], _ServicePlan]] = weakref.WeakKeyDictionary()


def _service_plan(store: FeatureStore, service: str) -> _ServicePlan:
    snapshot = _snapshot(store)
    plans = _PLANS.setdefault(store, {})
    plan = plans.get((service, snapshot))
    if plan is None:
        fs = _feature_service(store, service)
        from feast.types import PrimitiveFeastType

        numeric_types = {PrimitiveFeastType.INT32, PrimitiveFeastType.INT64}
        numeric_types |= {PrimitiveFeastType.FLOAT32, PrimitiveFeastType.FLOAT64, PrimitiveFeastType.BOOL}
        view_of: dict[str, str] = {}
        numeric: set[str] = set()
        tables: dict[str, Any] = {}
        for projection in fs.feature_view_projections:
            name = projection.name_to_use()
            tables[name] = _view(store, projection.name)
            for feat in projection.features:
                view_of[feat.name] = name
                if feat.dtype in numeric_types:
                    numeric.add(feat.name)
        if {k[1] for k in plans} != {snapshot}:
            plans.clear()  # a new registry snapshot makes older plans useless
        plan = plans[(service, snapshot)] = _ServicePlan(view_of, frozenset(numeric), tables)
    return plan


def _merged_plan(store: FeatureStore, services: tuple[str, ...]) -> _ServicePlan:
    """One plan reading the union of several services' features (each view once)."""
    plans = [_service_plan(store, s) for s in services]
    key = ("+".join(services), _snapshot(store))
    cached = _PLANS.setdefault(store, {}).get(key)
    if cached is not None:
        return cached
    view_of: dict[str, str] = {}
    numeric: set[str] = set()
    tables: dict[str, Any] = {}
    for plan in plans:
        for feature, view in plan.view_of.items():
            if view_of.setdefault(feature, view) != view:
                raise FeatureStoreError(
                    f"feature {feature!r} is served by views {view_of[feature]!r} and {view!r}: "
                    "bare feature names must be unique across the services read together"
                )
        numeric |= plan.numeric
        tables.update(plan.tables)
    merged = _PLANS[store][key] = _ServicePlan(view_of, frozenset(numeric), tables)
    return merged


def _seconds_to_utc(seconds: np.ndarray) -> pd.DatetimeIndex:
    stamps = seconds.astype("datetime64[s]")
    stamps[seconds < 0] = np.datetime64("NaT")
    return pd.DatetimeIndex(stamps).tz_localize("UTC")


def _view(store: FeatureStore, view_name: str) -> Any:
    try:
        return store.get_feature_view(view_name, allow_registry_cache=True)
    except Exception as exc:
        raise FeatureStoreError(
            f"feature view {view_name!r} not in the Feast registry", hint=APPLY_HINT
        ) from exc


def delete_online(store: FeatureStore | Settings, customer_ids: Sequence[str]) -> int:
    """Delete every online row of `customer_ids` (all feature views); returns the rows deleted.

    Feast 0.67 has no per-entity delete (Redis' `delete_entity_values` empties a whole entity type), so
    this deletes through each store's own layout, with Feast's key encoding: SQLite, one table per view
    keyed by the serialized entity key; Redis, one hash per entity holding every view's fields.
    """
    store = _as_store(store)
    ids = sorted({str(c) for c in customer_ids})
    if not ids:
        return 0
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    config = store.config
    version = config.entity_key_serialization_version
    keys = [
        serialize_entity_key(
            EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=i)]),
            entity_key_serialization_version=version,
        )
        for i in ids
    ]
    kind = getattr(config.online_store, "type", "sqlite")
    try:
        if kind == "redis":
            from feast.infra.online_stores.helpers import _redis_key

            client = store.provider.online_store._get_client(config.online_store)
            redis_keys = [
                _redis_key(
                    config.project,
                    EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=i)]),
                    version,
                )
                for i in ids
            ]
            return int(client.delete(*redis_keys))
        if kind == "sqlite":
            return _delete_sqlite(store, keys)
    except FeatureStoreError:
        raise
    except Exception as exc:
        raise FeatureStoreError(
            f"deleting {len(ids)} customer(s) from the online store failed: {type(exc).__name__}: {exc}",
            hint="check the online store is reachable, then run the command again",
        ) from exc
    raise FeatureStoreError(f"online store type {kind!r}: deleting a customer is not supported")


def _delete_sqlite(store: FeatureStore, keys: list[bytes]) -> int:
    import sqlite3

    from feast.infra.online_stores.sqlite import _quote_id, _table_id

    config = store.config
    path = Path(config.online_store.path)
    if not path.is_absolute():
        path = Path(store.repo_path) / path
    if not path.is_file():
        return 0
    versioning = config.registry.enable_online_feature_view_versioning
    deleted = 0
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for view in store.list_feature_views(allow_cache=True):
            table = _table_id(config.project, view, versioning)
            if table not in present:
                continue
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                deleted += conn.execute(
                    f"DELETE FROM {_quote_id(table)} WHERE entity_key IN ({marks})", chunk
                ).rowcount
    return deleted

"""The tag catalog and its quantile cut points at training time: which names the catalog may read (the
FeatureServices in Feast plus the model outputs), where the catalog and cut points live, and the
latest feature snapshot the cut points are fitted on. `persona retrain` fits them with the models;
serving loads what was fitted (serving imports this module, never the other way round).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from configs.settings import Settings
from features.build import FEATURE_TABLES as _BUILT_TABLES
from models.tag_engine import (
    MODEL_OUTPUTS,
    Catalog,
    default_known_names,
    default_string_names,
    fit_cutpoints,
    read_catalog_file,
    read_cutpoints,
    write_cutpoints,
)
from persona.errors import SourceError

# The feature tables, transactions first (the one every customer has); the list lives in features.build.
FEATURE_TABLES = tuple(_BUILT_TABLES)


def known_names(settings: Settings, *, store: Any = None, services: Iterable[str] | None = None) -> set[str]:
    """Names a catalog may read: the features of the FeatureServices (from Feast) plus the model outputs.

    `store` is a `feast.FeatureStore` (or the Settings) as `features.feast_io.service_features` takes
    it; without a store (e.g. `persona tags list` before `features apply`) the names are the built feature
    tables' columns (`features.build.FEATURE_TABLES`, which the Feast schemas are tested against).
    """
    if store is None:
        return default_known_names()
    from features.feast_io import service_features

    names = set(MODEL_OUTPUTS)
    for service in services if services is not None else settings.feast.services:
        names.update(service_features(store, service))
    return names


def load_catalog(settings: Settings, *, store: Any = None, known: Iterable[str] | None = None) -> Catalog:
    """Read and check `settings.tags.catalog`; names are checked against Feast when `store` is given."""
    names = set(known) if known is not None else known_names(settings, store=store)
    return read_catalog_file(
        settings.tags.catalog_path(), known_names=names, string_names=default_string_names()
    )


def cutpoints_path(settings: Settings) -> Path:
    return settings.path(settings.tags.cutpoints)


def load_cutpoints(settings: Settings, catalog: Catalog | None = None) -> dict[str, Any]:
    """The fitted cut points; an empty payload when the catalog uses none (nothing to fit)."""
    if catalog is not None and not catalog.cutpoints:
        return {"cutpoints": {}}
    return read_cutpoints(cutpoints_path(settings))


def latest_feature_frame(settings: Settings) -> pd.DataFrame:
    """The latest snapshot of every feature table, joined on customer_id (one row per customer).

    The transactions table is required; the optional tables join in when present (left join).
    """
    folder = settings.path(settings.feast.source_dir)
    first = folder / f"{FEATURE_TABLES[0]}.parquet"
    if not first.is_file():
        raise SourceError(f"no feature table at {first}", hint="run `persona features build` first")
    frames = []
    snapshot = None
    for name in FEATURE_TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            continue
        table = pd.read_parquet(path)
        if "customer_id" not in table.columns or "event_timestamp" not in table.columns:
            raise SourceError(f"{path}: needs columns customer_id and event_timestamp")
        if snapshot is None:
            snapshot = table["event_timestamp"].max()
        # the other tables join at the transactions table's snapshot (a table may lag behind)
        table = table[table["event_timestamp"] == snapshot].drop(columns=["created"], errors="ignore")
        frames.append(table if not frames else table.drop(columns=["event_timestamp"]))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.merge(other, on="customer_id", how="left")
    return frame.reset_index(drop=True)


def fit_and_save(
    settings: Settings, *, frame: pd.DataFrame | None = None, catalog: Catalog | None = None
) -> Path:
    """Fit the catalog's quantile cut points on the latest feature snapshot; save them (training calls this)."""
    catalog = catalog or load_catalog(settings)
    frame = latest_feature_frame(settings) if frame is None else frame
    return write_cutpoints(cutpoints_path(settings), fit_cutpoints(catalog, frame))

"""The tag catalog as both sides see it: which names a catalog may read (the FeatureServices in Feast plus
the model outputs), where the catalog and its fitted cut points live, and the latest feature snapshot.
Training fits the cut points (`training.tag_cutpoints`); serving loads them from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from artifacts.latest_snapshot import latest_feature_chunks as latest_snapshot_chunks
from configs.settings import Settings
from core.errors import CatalogError
from features.build import FEATURE_DTYPES
from features.build import FEATURE_TABLES as _BUILT_TABLES
from features.feast_io import service_features
from models.reasons import ReasonCatalog, parse_reason_catalog
from models.tag_engine import MODEL_OUTPUTS, SOURCES, Catalog, read_catalog_file, read_cutpoints
from models.tag_expr import STRING


def contract_names() -> dict[str, set[str]]:
    """`known_names` and `string_names` for a catalog checked without a Feast store: every feature of the
    built tables (`features.build`, the one list) plus the model outputs."""
    return {
        "known_names": set(FEATURE_DTYPES) | set(MODEL_OUTPUTS),
        "string_names": {n for n, t in FEATURE_DTYPES.items() if t == "string"}
        | {n for n, t in MODEL_OUTPUTS.items() if t == STRING},
    }


def read_catalog(path: str | Path) -> Catalog:
    """Read and check a catalog file against the contract's feature names."""
    return read_catalog_file(path, **contract_names())


# The feature tables, transactions first (the one every customer has); the list lives in features.build.
FEATURE_TABLES = tuple(_BUILT_TABLES)


def known_names(settings: Settings, *, store: Any = None, services: Iterable[str] | None = None) -> set[str]:
    """Names a catalog may read: the features of the FeatureServices (from Feast) plus the model outputs.

    `store` is a `feast.FeatureStore` (or the Settings) as `features.feast_io.service_features` takes
    it; without a store (e.g. `persona tags list` before `features apply`) the names are the built feature
    tables' columns (`features.build.FEATURE_TABLES`, which the Feast schemas are tested against).
    """
    if store is None:
        return contract_names()["known_names"]

    names = set(MODEL_OUTPUTS)
    for service in services if services is not None else settings.feast.services:
        names.update(service_features(store, service))
    return names


def load_catalog(settings: Settings, *, store: Any = None, known: Iterable[str] | None = None) -> Catalog:
    """Read and check `settings.tags.catalog`; names are checked against Feast when `store` is given."""
    names = set(known) if known is not None else known_names(settings, store=store)
    catalog = read_catalog_file(
        settings.tags.catalog_path(), known_names=names, string_names=contract_names()["string_names"]
    )
    return catalog.without_sources(absent_sources(settings))[0]


def absent_sources(settings: Settings) -> set[str]:
    """The optional sources this configuration does not map (their tags are skipped, with a note)."""
    return {name for name in SOURCES if not getattr(settings.sources, name).configured}


def cutpoints_path(settings: Settings) -> Path:
    return settings.path(settings.tags.cutpoints)


def load_cutpoints(settings: Settings, catalog: Catalog | None = None) -> dict[str, Any]:
    """The fitted cut points; an empty payload when the catalog uses none (nothing to fit)."""
    if catalog is not None and not catalog.cutpoints:
        return {"cutpoints": {}}
    return read_cutpoints(cutpoints_path(settings))


def latest_feature_chunks(
    settings: Settings, *, chunk_size: int, columns: Iterable[str] | None = None
) -> Iterator[pd.DataFrame]:
    """`latest_feature_frame` a chunk of at most `chunk_size` customers at a time (same rows, order and
    dtypes), reading only the latest snapshot's rows and, with `columns`, only those features: what
    `persona score --all` and `persona tags fit` hold at once (`artifacts.latest_snapshot`)."""
    folder = settings.path(settings.feast.source_dir)
    return latest_snapshot_chunks(folder, FEATURE_TABLES, chunk_size=chunk_size, columns=columns)


def latest_feature_frame(settings: Settings, *, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """The latest snapshot of every feature table, joined on customer_id (one row per customer).

    The transactions table is required; the optional tables join in when present (left join).
    """
    parts = list(latest_feature_chunks(settings, chunk_size=_WHOLE, columns=columns))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


_WHOLE = 1 << 62  # one chunk


def load_reason_catalog(settings: Settings) -> ReasonCatalog:
    """The reason catalog (`tags.reasons`), checked against the contract's feature names."""
    import yaml

    path = settings.tags.reasons_path()
    if not path.is_file():
        raise CatalogError(f"reason catalog not found: {path}", hint="set tags.reasons in the config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_reason_catalog(raw, known_names=set(FEATURE_DTYPES), source=str(path))

"""Batch tagging glue: features + model outputs -> catalog tags -> tag store; catalog and cut-point files.

The engine itself (`models/tag_engine.py`) is pure; this module holds the edges: which names the
catalog may read (the FeatureServices in Feast plus the model outputs), where the catalog and the cut
points live, the latest feature snapshot to fit on, and the tag store of the state database.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from configs.settings import Settings
from models.tag_engine import (
    MODEL_OUTPUTS,
    Catalog,
    fit_cutpoints,
    format_values,
    read_catalog_file,
    read_cutpoints,
    write_cutpoints,
)
from persona.errors import SourceError, ValidationFailed

FEATURE_TABLES = ("customer_transactions", "customer_engagement", "customer_leads", "customer_profile")


def known_names(
    settings: Settings, *, store: Any = None, services: Iterable[str] | None = None
) -> set[str] | None:
    """Names a catalog may read: the features of the FeatureServices (from Feast) plus the model outputs.

    `store` is a `feast.FeatureStore` (or the Settings) as `features.feast_io.service_features` takes
    it; without a store this returns None, and the loader checks against the contract's feature list.
    """
    if store is None:
        return None
    from features.feast_io import service_features

    names = set(MODEL_OUTPUTS)
    for service in services if services is not None else settings.feast.services:
        names.update(service_features(store, service))
    return names


def load_catalog(settings: Settings, *, store: Any = None, known: Iterable[str] | None = None) -> Catalog:
    """Read and check `settings.tags.catalog`; names are checked against Feast when `store` is given."""
    names = set(known) if known is not None else known_names(settings, store=store)
    return read_catalog_file(settings.tags.catalog_path(), known_names=names)


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


def tag_customers(
    settings: Settings,
    *,
    frame: pd.DataFrame,
    catalog: Catalog,
    cutpoints: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Tag every customer of `frame` (features + model outputs, column `customer_id`).

    Returns `customer_id` + one column per catalog tag, values as the CRM sees them (strings, None =
    unset). Rows whose `consent_profiling` is False (if that column is present) are never tagged.
    `cutpoints` defaults to the fitted ones in `settings.tags.cutpoints`.
    """
    if "customer_id" not in frame.columns:
        raise ValidationFailed("the frame to tag needs a 'customer_id' column")
    if "consent_profiling" in frame.columns:
        # False = withdrawn; missing (never asked) = allowed, as in the clean customers table
        frame = frame[~frame["consent_profiling"].eq(False).to_numpy()]
    dup = frame["customer_id"].duplicated()
    if dup.any():
        raise ValidationFailed(
            f"customer {frame['customer_id'][dup].iloc[0]} appears in {int(dup.sum()) + 1} rows of the frame "
            "to tag; pass one row per customer (one snapshot)"
        )
    if cutpoints is None:
        cutpoints = load_cutpoints(settings, catalog)
    tags = format_values(catalog.evaluate(frame, cutpoints), catalog)
    tags.insert(0, "customer_id", frame["customer_id"].astype(str).to_numpy())
    return tags.reset_index(drop=True)


def tag_distribution(tags: pd.DataFrame, *, top: int = 12) -> str:
    """A readable table of each tag's value counts (most common first; `unset` = no value)."""
    lines = []
    total = len(tags)
    for col in tags.columns:
        if col == "customer_id":
            continue
        counts = tags[col].astype(object).where(tags[col].notna(), "unset").value_counts()
        lines.append(f"{col}")
        for value, count in counts.head(top).items():
            share = 100.0 * count / total if total else 0.0
            lines.append(f"  {str(value):<22} {count:>9,}  {share:5.1f}%")
        if len(counts) > top:
            rest = int(counts.iloc[top:].sum())
            lines.append(
                f"  {'(' + str(len(counts) - top) + ' more)':<22} {rest:>9,}  {100.0 * rest / total:5.1f}%"
            )
    return "\n".join(lines)


def open_tag_store(settings: Settings, catalog: Catalog | None = None) -> Any:
    """The TagStore of the state database (`settings.state_url`), its tables created if missing."""
    from serving.outbox import make_state_engine
    from serving.tag_store import TagStore

    engine = make_state_engine(settings.url(settings.state_url))
    store = TagStore.from_catalog(engine, catalog) if catalog is not None else TagStore(engine)
    store.create_schema()
    return store

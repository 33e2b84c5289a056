"""Fitting the tag catalog's quantile cut points at training time (`persona retrain`, `persona tags fit`).
Loading the catalog and what was fitted lives in `artifacts.catalog`, which serving reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from artifacts.catalog import cutpoints_path, latest_feature_frame, load_catalog
from configs.settings import Settings
from models.tag_engine import Catalog, fit_cutpoints, write_cutpoints
from models.tag_expr import names_in


def fit_and_save(
    settings: Settings, *, frame: pd.DataFrame | None = None, catalog: Catalog | None = None
) -> Path:
    """Fit the catalog's quantile cut points on the latest feature snapshot; save them (training calls this)."""
    catalog = catalog or load_catalog(settings)
    if frame is None:  # only the columns the cut points read, of the latest snapshot only
        frame = latest_feature_frame(settings, columns=cutpoint_columns(catalog))
    return write_cutpoints(cutpoints_path(settings), fit_cutpoints(catalog, frame))


def cutpoint_columns(catalog: Catalog) -> set[str]:
    """The features the catalog's cut points are fitted on, and those their populations read."""
    out: set[str] = set()
    for spec in catalog.cutpoints.values():
        out.add(spec.feature)
        if spec.population_ast is not None:
            out.update(names_in(spec.population_ast))
    return out

"""Fitting the tag catalog's quantile cut points at training time (`persona retrain`, `persona tags fit`).
Loading the catalog and what was fitted lives in `artifacts.catalog`, which serving reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from artifacts.catalog import cutpoints_path, latest_feature_frame, load_catalog
from configs.settings import Settings
from models.tag_engine import Catalog, fit_cutpoints, write_cutpoints


def fit_and_save(
    settings: Settings, *, frame: pd.DataFrame | None = None, catalog: Catalog | None = None
) -> Path:
    """Fit the catalog's quantile cut points on the latest feature snapshot; save them (training calls this)."""
    catalog = catalog or load_catalog(settings)
    frame = latest_feature_frame(settings) if frame is None else frame
    return write_cutpoints(cutpoints_path(settings), fit_cutpoints(catalog, frame))

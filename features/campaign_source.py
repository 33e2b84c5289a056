"""A finished campaign read from a file through its mapping (`source:` of a campaign YAML): one row per
customer with `customer_id`, `arm`, each outcome under its declared name, and the covariates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from configs.campaign import CampaignSpec
from core.errors import SourceError
from features.shared_data import shared_data_dir

ARM = "arm"
CUSTOMER_ID = "customer_id"


def read_campaign_source(spec: CampaignSpec, *, root: Path | None = None) -> pd.DataFrame:
    """Read and check the mapped file: every named column present, every arm value mapped, outcomes
    numeric (rates 0/1). Errors name the file, row (1-based data row) and column."""
    source = spec.source
    if source is None:
        raise SourceError(f"campaign {spec.name!r} has no `source:`; it is run by Persona, not imported")
    path = Path(source.path)
    if not path.is_absolute():
        path = (root or shared_data_dir()) / path
    if not path.is_file():
        raise SourceError(
            f"campaign {spec.name!r}: source file not found: {path}",
            hint="set PERSONA_SHARED_DATA to the folder holding the public datasets",
        )
    raw = pd.read_csv(path, sep=source.separator, dtype=str, keep_default_na=False)
    outcome_columns = [o.column for o in source.outcomes.values()]
    needed = [source.arm_column, *outcome_columns, *source.covariates]
    if source.id_column:
        needed.append(source.id_column)
    for column in needed:
        if column not in raw.columns:
            raise SourceError(f"{path}: column {column!r} named in campaign {spec.name!r} is not in the file")
    arm = raw[source.arm_column].map(source.arms)
    if arm.isna().any():
        row = int(np.flatnonzero(arm.isna().to_numpy())[0])
        raise SourceError(
            f"{path}: row {row + 1}, column {source.arm_column!r}: value {raw[source.arm_column].iloc[row]!r} "
            "is not mapped to an arm in `source.arms`"
        )
    ids = raw[source.id_column] if source.id_column else pd.Series(np.arange(1, len(raw) + 1)).astype(str)
    out = pd.DataFrame({CUSTOMER_ID: ids.to_numpy(), ARM: arm.to_numpy()})
    for name, outcome in source.outcomes.items():
        values = pd.to_numeric(raw[outcome.column], errors="coerce")
        bad = values.isna() | (~values.isin([0, 1]) if outcome.type == "rate" else values.isna())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            expected = "0 or 1" if outcome.type == "rate" else "a number"
            raise SourceError(
                f"{path}: row {row + 1}, column {outcome.column!r}: {raw[outcome.column].iloc[row]!r} is not {expected}"
            )
        out[name] = values.to_numpy(dtype=float)
    for column in source.covariates:
        if column in source.categorical:
            out[column] = pd.Categorical(raw[column].str.strip().to_numpy())
        else:
            values = pd.to_numeric(raw[column], errors="coerce")
            out[column] = values.to_numpy(dtype=float)
    return out

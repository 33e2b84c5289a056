"""Public datasets through the same model code: a YAML mapping per dataset (`configs/datasets/*.yaml`)
says how to read it (path, separator, label and positive value, id, columns to drop, categoricals, numeric
coercions, missing markers, split); nothing here knows any dataset by name.

Files are read in place from the shared data folder (`<repo>/../shared/data`, or `$PERSONA_SHARED_DATA`).
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.model_selection import train_test_split

from core.errors import ConfigError, SourceError
from features.shared_data import shared_data_dir
from models.classifier import fit_baseline, fit_classifier
from models.metrics import binary_metrics
from training.jobs import select_candidate

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "configs" / "datasets"
LABEL = "label"


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # random_stratified: shuffled with the seed, class shares kept; ordered: by row order (time order).
    method: Literal["random_stratified", "ordered"] = "random_stratified"
    train: float = Field(0.6, gt=0, lt=1)
    valid: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _leaves_a_test_set(self) -> SplitConfig:
        if self.train + self.valid >= 1:
            raise ValueError(
                f"train + valid must be below 1 (the rest is test), got {self.train + self.valid}"
            )
        return self


class DatasetMapping(BaseModel):
    """How to read one public dataset into features + a 0/1 label."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["churn", "conversion"]
    path: str  # relative to the shared data folder, or absolute
    separator: str = ","
    label: str
    positive: str | int | float | bool
    id_column: str | None = None
    drop: list[str] = Field(default_factory=list)  # names or fnmatch patterns (`Asymmetrique*`)
    categorical: Literal["auto"] | list[str] = "auto"  # auto: every non-numeric column
    numeric: list[str] = Field(default_factory=list)  # coerced with blanks/garbage -> missing
    missing_values: list[str] = Field(default_factory=list)  # extra markers read as missing
    split: SplitConfig = Field(default_factory=SplitConfig)


def mapping_paths() -> list[Path]:
    """Every dataset mapping shipped in `configs/datasets/` (not the pipeline configs beside them, such
    as `cdnow.yaml`, which map a dataset onto `sources:` and run through `persona --config`)."""
    return [p for p in sorted(DATASETS_DIR.glob("*.yaml")) if not is_pipeline_config(p)]


def is_pipeline_config(path: Path) -> bool:
    """A Persona settings file (it has `sources:`), as opposed to a dataset mapping."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return isinstance(loaded, dict) and "sources" in loaded


def load_mapping(path: str | Path) -> DatasetMapping:
    """Read and validate a dataset mapping; a bare name means `configs/datasets/<name>.yaml`."""
    p = Path(path)
    if p.suffix not in (".yaml", ".yml"):
        p = DATASETS_DIR / f"{p.name}.yaml"
    if not p.is_file():
        raise ConfigError(f"dataset mapping not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        return DatasetMapping(**raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{p}: invalid dataset mapping: {exc}") from None


def snake_case(name: str) -> str:
    """`Total Time Spent on Website` -> `total_time_spent_on_website` (feature names are snake_case)."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass
class PreparedDataset:
    frame: pd.DataFrame  # features (snake_case) + `label` (0/1), in file order
    features: list[str]
    categorical: list[str]
    source_columns: dict[str, str]  # feature -> column name in the file


def prepare_frame(raw: pd.DataFrame, mapping: DatasetMapping, *, source: str) -> PreparedDataset:
    """Apply a mapping to a raw frame read as text: label, drops, missing markers, coercions, names."""
    columns = list(raw.columns)
    for needed in [mapping.label, *([mapping.id_column] if mapping.id_column else []), *mapping.numeric]:
        if needed not in columns:
            raise SourceError(
                f"{source}: column {needed!r} named in mapping {mapping.name!r} is not in the file"
            )
    labels = raw[mapping.label].str.strip()
    empty = labels.isna() | (labels == "")
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0]) + 1  # 1-based data row
        raise SourceError(f"{source}: row {row}, column {mapping.label!r}: the label is empty")
    y = (labels == str(mapping.positive)).astype("int64")
    if y.min() == y.max():
        raise SourceError(
            f"{source}: no row has {mapping.label!r} == {mapping.positive!r} (or every row has it)",
            hint="check `positive` in the dataset mapping",
        )
    dropped = {mapping.label, mapping.id_column} - {None}
    for pattern in mapping.drop:
        hits = fnmatch.filter(columns, pattern)
        if not hits:
            raise SourceError(
                f"{source}: `drop` entry {pattern!r} of mapping {mapping.name!r} matches no column"
            )
        dropped.update(hits)
    kept = [c for c in columns if c not in dropped]
    frame = raw[kept].apply(lambda s: s.str.strip())
    markers = ["", *mapping.missing_values]
    frame = frame.mask(frame.isin(markers))
    numeric_cols = set(mapping.numeric)
    for col in kept:
        converted = pd.to_numeric(frame[col], errors="coerce")
        fully_numeric = converted.notna().sum() == frame[col].notna().sum()
        if col in numeric_cols or fully_numeric:
            frame[col] = converted
    if mapping.categorical == "auto":
        categorical_src = [c for c in kept if not pd.api.types.is_numeric_dtype(frame[c])]
    else:
        categorical_src = list(mapping.categorical)
        stray = [c for c in categorical_src if c not in kept]
        if stray:
            raise SourceError(
                f"{source}: categorical column(s) {stray} are not in the file (or were dropped)"
            )
    names = {c: snake_case(c) for c in kept}
    if len(set(names.values())) != len(names):
        raise SourceError(f"{source}: two columns collapse to the same snake_case name: {names}")
    frame = frame.rename(columns=names)
    frame[LABEL] = y.to_numpy()
    return PreparedDataset(
        frame=frame,
        features=[names[c] for c in kept],
        categorical=[names[c] for c in categorical_src],
        source_columns={v: k for k, v in names.items()},
    )


def load_dataset(mapping: DatasetMapping, *, root: Path | None = None) -> PreparedDataset:
    """Read the mapped file (as text, so coercions are the mapping's) and prepare it."""
    path = Path(mapping.path)
    if not path.is_absolute():
        path = (root or shared_data_dir()) / path
    if not path.is_file():
        raise SourceError(
            f"dataset {mapping.name!r}: file not found: {path}",
            hint="set PERSONA_SHARED_DATA to the folder holding the public datasets",
        )
    try:
        raw = pd.read_csv(path, sep=mapping.separator, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SourceError(
            f"{path}: cannot be read as a {mapping.separator!r}-separated file: {exc}"
        ) from None
    return prepare_frame(raw, mapping, source=str(path))


def split_dataset(
    frame: pd.DataFrame, *, split: SplitConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test): by row order, or shuffled and stratified on the label with `seed`."""
    n = len(frame)
    if split.method == "ordered":
        a, b = int(n * split.train), int(n * (split.train + split.valid))
        return frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:]

    train, rest = train_test_split(frame, train_size=split.train, stratify=frame[LABEL], random_state=seed)
    valid_share = split.valid / (1 - split.train)
    valid, test = train_test_split(rest, train_size=valid_share, stratify=rest[LABEL], random_state=seed)
    return train, valid, test


def evaluate_dataset(
    mapping: DatasetMapping, *, seed: int, root: Path | None = None, metric: str = "pr_auc"
) -> dict:
    """Fit LightGBM and the logistic baseline on the mapped dataset's train split (calibrated and tiered
    on valid) and return their held-out test metrics, split sizes and fit times; `valid_<model>` their
    validation metrics, and `shipped` which one training would register (the better on validation
    `metric`, as `training.jobs.select_candidate` chooses)."""

    data = load_dataset(mapping, root=root)
    train, valid, test = split_dataset(data.frame, split=mapping.split, seed=seed)
    common = {
        "kind": mapping.kind,
        "train": train,
        "valid": valid,
        "features": data.features,
        "label": LABEL,
        "categorical": data.categorical,
        "seed": seed,
    }
    result: dict = {
        "dataset": mapping.name,
        "kind": mapping.kind,
        "split": mapping.split.method,
        "n_rows": len(data.frame),
        "n_train": len(train),
        "n_valid": len(valid),
        "n_test": len(test),
        "n_features": len(data.features),
        "train_positive_rate": float(train[LABEL].mean()),
        "test_positive_rate": float(test[LABEL].mean()),
    }
    bundles = {}
    for key, fit in (("lightgbm", fit_classifier), ("baseline", fit_baseline)):
        started = time.perf_counter()
        bundle = bundles[key] = fit(**common)
        result[f"{key}_fit_seconds"] = time.perf_counter() - started
        result[key] = binary_metrics(test[LABEL].to_numpy(), bundle.predict_proba(test))
        result[f"valid_{key}"] = binary_metrics(valid[LABEL].to_numpy(), bundle.predict_proba(valid))
        if key == "lightgbm":
            result["lightgbm_best_iteration"] = bundle.metadata["best_iteration"]
    chosen, why = select_candidate(bundles["lightgbm"], bundles["baseline"], valid=valid, metric=metric)
    result["shipped"] = "lightgbm" if chosen is bundles["lightgbm"] else "baseline"
    result["shipped_why"] = why
    result["shipped_metric"] = metric
    return result

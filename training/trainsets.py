"""Training sets: labels from the clean tables, time split, then features from the FeatureService by
point-in-time retrieval (`features.feast_io.training_frame`).

At scale the labelled rows (customers x snapshots) outgrow memory long before LightGBM needs them all:
above `training.max_train_rows` training rows, whole customers are sampled before any feature is
retrieved (`sample_split`), and the sampling is stated on the run (`Sampling`, logged by training.jobs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import StageSkipped, ValidationFailed
from features.build import read_clean
from features.clock import clean_as_of
from features.feast_io import get_store, service_features, training_frame
from features.snapshots import snapshot_dates
from training.labels import churn_labels, conversion_labels, segmentation_entities, value_labels
from training.splits import TimeSplit, time_split

if TYPE_CHECKING:
    from configs.settings import Settings

log = logging.getLogger(__name__)
LABEL = "label"
SAMPLING_METHOD = "whole customers, by a hash of customer_id and training.seed; same share in every split"


@dataclass(frozen=True)
class Sampling:
    """Which share of the labelled rows a model was trained and evaluated on."""

    max_train_rows: int
    fraction: float  # 1.0: the full frame
    available: dict[str, int] = field(default_factory=dict)  # labelled rows per split
    used: dict[str, int] = field(default_factory=dict)
    seed: int | None = None  # the hash key's seed (training.seed)
    limit: str = "training.max_train_rows"  # the setting the rows were held under

    @property
    def full(self) -> bool:
        return self.fraction >= 1.0

    def statement(self) -> str:
        """One sentence for the run's description and report."""
        if self.full:
            first = next(iter(self.used), "train")
            return f"full frame ({self.used.get(first, 0):,} {first} rows, at most {self.max_train_rows:,})"
        parts = ", ".join(f"{k} {self.used[k]:,} of {self.available[k]:,}" for k in self.available)
        return (
            f"sampled {self.fraction:.1%} of customers ({SAMPLING_METHOD}, seed {self.seed}) to stay under "
            f"{self.limit}={self.max_train_rows:,}: {parts} rows"
        )

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sampling.fraction": round(self.fraction, 6),
            f"sampling.{self.limit.rsplit('.', 1)[-1]}": self.max_train_rows,
            "sampling.method": "full frame" if self.full else SAMPLING_METHOD,
            "sampling.seed": self.seed,
        }
        for split, rows in self.available.items():
            out[f"sampling.{split}_rows_available"] = rows
            out[f"sampling.{split}_rows_used"] = self.used.get(split, rows)
        return out


def customer_share(ids: pd.Series, *, seed: int) -> np.ndarray:
    """A stable number in [0, 1) per customer id (the same id always gets the same number for a seed)."""
    key = f"{seed % 10**16:016d}"  # pandas' hash key: exactly 16 characters
    hashed = pd.util.hash_pandas_object(ids.astype(str), index=False, hash_key=key).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def sample_split(split: TimeSplit, *, max_train_rows: int, seed: int) -> tuple[TimeSplit, Sampling]:
    """`split` itself when its train part fits in `max_train_rows`; else the rows of a share of the
    customers (the same customers in every split, so no split learns from another's population)."""
    names = ("train", "valid", "test")
    available = {n: len(getattr(split, n)) for n in names}
    if available["train"] <= max_train_rows:
        return split, Sampling(max_train_rows, 1.0, available, dict(available), seed=seed)
    fraction = max_train_rows / available["train"]
    frames = {}
    for n in names:
        frame = getattr(split, n)
        frames[n] = frame[customer_share(frame["customer_id"], seed=seed) < fraction].reset_index(drop=True)
    used = {n: len(frames[n]) for n in names}
    return replace(split, **frames), Sampling(max_train_rows, fraction, available, used, seed=seed)


def sample_customers(
    frame: pd.DataFrame, *, max_rows: int, seed: int, limit: str
) -> tuple[pd.DataFrame, Sampling]:
    """`frame` itself when it has at most `max_rows` rows; else the rows of a share of its customers
    (the same hash as `sample_split`), with the sampling stated under `limit` (the setting's name)."""
    available = {"fit": len(frame)}
    if len(frame) <= max_rows:
        return frame, Sampling(max_rows, 1.0, available, dict(available), seed=seed, limit=limit)
    fraction = max_rows / len(frame)
    kept = frame[customer_share(frame["customer_id"], seed=seed) < fraction].reset_index(drop=True)
    return kept, Sampling(max_rows, fraction, available, {"fit": len(kept)}, seed=seed, limit=limit)


@dataclass
class ClassifierData:
    """Train/valid/test frames (entity columns, `label`, then the service's features)."""

    kind: str
    service: str
    split: TimeSplit
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    features: list[str]
    categorical: list[str]
    sampling: Sampling | None = None


@dataclass
class ValueData:
    """Train/valid/test frames for the value model: entity columns, `label` (spend over the horizon),
    then the service's features."""

    service: str
    split: TimeSplit
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    features: list[str]
    categorical: list[str]
    horizon_days: int
    sampling: Sampling | None = None


@dataclass
class SegmentData:
    """The latest snapshot's customers with the segmentation service's features."""

    service: str
    frame: pd.DataFrame
    features: list[str]
    snapshot: pd.Timestamp


def _read_clean(settings: Settings, table: str) -> pd.DataFrame | None:
    return read_clean(settings, table)


def _snapshots(settings: Settings) -> list[pd.Timestamp]:
    return snapshot_dates(settings.features)


def labels_for(settings: Settings, kind: str) -> pd.DataFrame:
    """The labelled entity frame of a classifier kind from `{data_dir}/clean` (see training.labels)."""

    customers = _read_clean(settings, "customers")
    snaps = _snapshots(settings)
    # Labels only where the whole horizon is observed: up to the data's clock, never the wall clock.
    as_of = clean_as_of(settings)
    if kind == "churn":
        return churn_labels(
            orders=_read_clean(settings, "orders"),
            customers=customers,
            snapshots=snaps,
            horizon_days=settings.training.churn_horizon_days,
            activity_days=settings.training.activity_window_days,
            data_end=as_of,
        )
    if kind == "conversion":
        leads = _read_clean(settings, "leads")
        if leads is None:
            raise StageSkipped("conversion model not configured: no leads source (sources.leads)")
        return conversion_labels(
            leads=leads,
            customers=customers,
            snapshots=snaps,
            horizon_days=settings.training.conversion_horizon_days,
            data_end=as_of,
        )
    raise ValidationFailed(f"no labels for model kind {kind!r}")


# The source each optional feature view is built from: what to tell a user when a model cannot run.
_VIEW_SOURCES = {
    "customer_engagement": "events",
    "customer_leads": "leads",
    "customer_profile": "contacts",
    "customer_transactions": "orders",
}


def choose_service(settings: Settings, kind: str, *, store: Any) -> str:
    """The first of `training.services[kind]` whose feature tables were all built.

    None usable: conversion without leads is not configured (StageSkipped: the run goes on without it);
    for segments and churn it is an error naming the missing tables (orders alone always suffice for
    the shipped `*_orders_v1` services)."""
    from features.feast_io import first_usable_service

    candidates = settings.training.services[kind]  # type: ignore[index]
    service, lacking = first_usable_service(store, candidates)
    if service is not None:
        return service
    absent = sorted({_VIEW_SOURCES.get(v, v) for views in lacking.values() for v in views})
    detail = "; ".join(f"{s} needs {', '.join(v)}" for s, v in lacking.items())
    if kind == "conversion":
        raise StageSkipped(f"conversion model not configured: no {' / '.join(absent)} source ({detail})")
    raise ValidationFailed(
        f"{kind}: no usable FeatureService among training.services.{kind} ({detail})",
        hint="run `persona features build` and `persona features apply`, or list a service whose "
        "sources you have",
    )


def split_frames(store: Any, split: TimeSplit, *, service: str) -> dict[str, pd.DataFrame]:
    """Train, valid and test with the service's features, from ONE point-in-time retrieval: each
    retrieval reads the feature tables whole, so three cost three reads. A row's features depend only
    on its own customer and time; every frame keeps its rows, order and index."""
    names = ("train", "valid", "test")
    parts = [getattr(split, n) for n in names]
    whole = training_frame(store, entity_df=pd.concat(parts, ignore_index=True), service=service)
    frames, start = {}, 0
    for name, part in zip(names, parts, strict=True):
        frame = whole.iloc[start : start + len(part)].copy()
        frame.index = part.index
        frames[name] = frame
        start += len(part)
    return frames


def categorical_features(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Features held as text (strings or objects) are categorical."""
    return [
        f
        for f in features
        if not pd.api.types.is_numeric_dtype(frame[f]) and not pd.api.types.is_bool_dtype(frame[f])
    ]


def classifier_data(settings: Settings, kind: str, *, store: Any = None) -> ClassifierData:
    """Labels -> purged time split -> point-in-time features from the kind's FeatureService."""

    store = store or get_store(settings)
    horizon = (
        settings.training.churn_horizon_days if kind == "churn" else settings.training.conversion_horizon_days
    )
    labels = labels_for(settings, kind)
    service = choose_service(settings, kind, store=store)
    split, sampling = sample_split(
        time_split(labels, horizon_days=horizon),
        max_train_rows=settings.training.max_train_rows,
        seed=settings.training.seed,
    )
    log.info("%s rows: %s", kind, sampling.statement())
    del labels
    features = service_features(store, service)
    frames = split_frames(store, split, service=service)
    for name, frame in frames.items():
        if frame[LABEL].nunique() < 2:
            raise ValidationFailed(
                f"{kind}: the {name} split ({len(frame)} rows, snapshots "
                f"{sorted({str(t.date()) for t in frame['event_timestamp']})}) has a single class; "
                "a classifier needs both outcomes",
                hint="use more customers or a longer data period",
            )
    return ClassifierData(
        kind=kind,
        service=service,
        split=split,
        features=features,
        categorical=categorical_features(frames["train"], features),
        sampling=sampling,
        **frames,
    )


def value_data(settings: Settings, *, store: Any = None) -> ValueData:
    """Spend labels (training.labels.value_labels) -> purged time split -> point-in-time features of the
    value model's FeatureService."""

    store = store or get_store(settings)
    service = choose_service(settings, "clv", store=store)
    from features.clock import clean_as_of

    horizon = settings.training.clv_horizon_days
    labels = value_labels(
        orders=_read_clean(settings, "orders"),
        customers=_read_clean(settings, "customers"),
        snapshots=_snapshots(settings),
        horizon_days=horizon,
        data_end=clean_as_of(settings),
    )
    try:
        split, sampling = sample_split(
            time_split(labels, horizon_days=horizon),
            max_train_rows=settings.training.max_train_rows,
            seed=settings.training.seed,
        )
        log.info("clv rows: %s", sampling.statement())
    except ValidationFailed as exc:  # data too short for this horizon: the other models still train
        raise StageSkipped(
            f"clv model skipped: {exc.message}",
            hint=f"training.clv_horizon_days={horizon} needs about 3 x {horizon} days of orders "
            "(train, validation and test label windows that do not overlap)",
        ) from None
    features = service_features(store, service)
    frames = split_frames(store, split, service=service)
    for name, frame in frames.items():
        if not frame[LABEL].gt(0).any():
            raise ValidationFailed(
                f"clv: nobody in the {name} split ({len(frame)} customers) spent anything in the "
                f"{horizon}-day horizon; a value model needs buyers"
            )
    return ValueData(
        service=service,
        split=split,
        features=features,
        categorical=categorical_features(frames["train"], features),
        horizon_days=horizon,
        sampling=sampling,
        **frames,
    )


def segment_data(settings: Settings, *, store: Any = None) -> SegmentData:
    """The latest snapshot's customers (completed order before it, consent kept) with their features."""

    store = store or get_store(settings)
    service = choose_service(settings, "segments", store=store)

    entities = segmentation_entities(
        orders=_read_clean(settings, "orders"),
        customers=_read_clean(settings, "customers"),
        snapshots=_snapshots(settings),
        data_end=clean_as_of(settings),
    )
    if entities.empty:
        raise ValidationFailed("segments: no customer with a completed order before the latest snapshot")
    features = service_features(store, service)
    frame = training_frame(store, entity_df=entities, service=service)
    return SegmentData(
        service=service, frame=frame, features=features, snapshot=entities["event_timestamp"].iloc[0]
    )

"""Training sets: labels from the clean tables, time split, then features from the FeatureService by
point-in-time retrieval (`features.feast_io.training_frame`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import StageSkipped, ValidationFailed
from training.labels import churn_labels, conversion_labels, segmentation_entities
from training.splits import TimeSplit, time_split

if TYPE_CHECKING:
    from configs.settings import Settings

LABEL = "label"


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


@dataclass
class SegmentData:
    """The latest snapshot's customers with the segmentation service's features."""

    service: str
    frame: pd.DataFrame
    features: list[str]
    snapshot: pd.Timestamp


def _read_clean(settings: Settings, table: str) -> pd.DataFrame | None:
    from features.build import read_clean

    return read_clean(settings, table)


def _snapshots(settings: Settings) -> list[pd.Timestamp]:
    from features.snapshots import snapshot_dates

    return snapshot_dates(settings.features)


def labels_for(settings: Settings, kind: str) -> pd.DataFrame:
    """The labelled entity frame of a classifier kind from `{data_dir}/clean` (see training.labels)."""
    customers = _read_clean(settings, "customers")
    snaps = _snapshots(settings)
    if kind == "churn":
        return churn_labels(
            orders=_read_clean(settings, "orders"),
            customers=customers,
            snapshots=snaps,
            horizon_days=settings.training.churn_horizon_days,
            activity_days=settings.training.activity_window_days,
        )
    if kind == "conversion":
        leads = _read_clean(settings, "leads")
        if leads is None:
            raise StageSkipped(
                "conversion model skipped: no clean 'leads' table (the leads source is absent)"
            )
        return conversion_labels(
            leads=leads,
            customers=customers,
            snapshots=snaps,
            horizon_days=settings.training.conversion_horizon_days,
        )
    raise ValidationFailed(f"no labels for model kind {kind!r}")


def categorical_features(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Features held as text (strings or objects) are categorical."""
    return [
        f
        for f in features
        if not pd.api.types.is_numeric_dtype(frame[f]) and not pd.api.types.is_bool_dtype(frame[f])
    ]


def classifier_data(settings: Settings, kind: str, *, store: Any = None) -> ClassifierData:
    """Labels -> purged time split -> point-in-time features from the kind's FeatureService."""
    from features.feast_io import get_store, service_features, training_frame

    store = store or get_store(settings)
    service = settings.training.services[kind]  # type: ignore[index]
    horizon = (
        settings.training.churn_horizon_days if kind == "churn" else settings.training.conversion_horizon_days
    )
    labels = labels_for(settings, kind)
    split = time_split(labels, horizon_days=horizon)
    features = service_features(store, service)
    frames = {
        name: training_frame(store, entity_df=getattr(split, name), service=service)
        for name in ("train", "valid", "test")
    }
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
        **frames,
    )


def segment_data(settings: Settings, *, store: Any = None) -> SegmentData:
    """The latest snapshot's customers (completed order before it, consent kept) with their features."""
    from features.feast_io import get_store, service_features, training_frame

    store = store or get_store(settings)
    service = settings.training.services["segments"]
    entities = segmentation_entities(
        orders=_read_clean(settings, "orders"),
        customers=_read_clean(settings, "customers"),
        snapshots=_snapshots(settings),
    )
    if entities.empty:
        raise ValidationFailed("segments: no customer with a completed order before the latest snapshot")
    features = service_features(store, service)
    frame = training_frame(store, entity_df=entities, service=service)
    return SegmentData(
        service=service, frame=frame, features=features, snapshot=entities["event_timestamp"].iloc[0]
    )

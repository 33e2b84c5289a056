"""Training sets: labels from the clean tables, time split, then features from the FeatureService by
point-in-time retrieval (`features.feast_io.training_frame`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
        split = time_split(labels, horizon_days=horizon)
    except ValidationFailed as exc:  # data too short for this horizon: the other models still train
        raise StageSkipped(
            f"clv model skipped: {exc.message}",
            hint=f"training.clv_horizon_days={horizon} needs about 3 x {horizon} days of orders "
            "(train, validation and test label windows that do not overlap)",
        ) from None
    features = service_features(store, service)
    frames = {
        name: training_frame(store, entity_df=getattr(split, name), service=service)
        for name in ("train", "valid", "test")
    }
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

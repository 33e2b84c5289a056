"""The model health page's numbers: each champion (version, when and how promoted, held-out metrics and
their trend over versions) from the MLflow registry, feature drift between each champion's training
window and the latest snapshot (PSI, `models.drift`), and the freshness of each feature view on the
data's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import Settings
from serving.dashboard import sources

# Run metrics that are not the model's own held-out quality (logged beside it for the gate).
_OTHER_PREFIXES = ("valid_", "baseline_", "champion_")


@dataclass
class ModelVersion:
    version: int
    created: pd.Timestamp
    metrics: dict[str, float]
    aliases: list[str]
    promoted_at: str
    promoted_by: str
    gate: str
    service: str
    window: dict[str, str]


@dataclass
class ModelHealth:
    kind: str
    name: str
    versions: list[ModelVersion] = field(default_factory=list)
    error: str | None = None

    @property
    def champion(self) -> ModelVersion | None:
        return next((v for v in self.versions if "champion" in v.aliases), None)

    @property
    def metric_names(self) -> list[str]:
        names: list[str] = []
        for v in self.versions:
            names += [m for m in v.metrics if m not in names]
        return sorted(names)


def held_out_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The test-window metrics of a run (`test_*`), or, for a model without a test split (segments), its
    own quality metrics (anything not logged for comparison)."""
    test = {k: v for k, v in metrics.items() if k.startswith("test_")}
    if test:
        return test
    return {k: v for k, v in metrics.items() if not k.startswith(_OTHER_PREFIXES)}


def registry_health(settings: Settings) -> list[ModelHealth]:
    """Every registered model's versions, newest last; a model not trained yet has none."""
    from mlflow.exceptions import MlflowException

    from artifacts.registry import KINDS, SERVICE_TAG, client, model_name

    c = client(settings)
    out = []
    for kind in KINDS:
        name = model_name(settings, kind)
        health = ModelHealth(kind=kind, name=name)
        out.append(health)
        try:
            model = c.get_registered_model(name)
            versions = c.search_model_versions(f"name='{name}'")
        except MlflowException:
            continue  # not registered yet
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in versions:
            metrics: dict[str, float] = {}
            params: dict[str, str] = {}
            if mv.run_id:
                try:
                    run = c.get_run(mv.run_id)
                    metrics, params = run.data.metrics, run.data.params
                except MlflowException as exc:
                    health.error = f"run {mv.run_id}: {exc.message}"
            tags = mv.tags or {}
            health.versions.append(
                ModelVersion(
                    version=int(mv.version),
                    created=pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
                    metrics=held_out_metrics(metrics),
                    aliases=sorted(aliases.get(str(mv.version), [])),
                    promoted_at=tags.get("champion.promoted_at", ""),
                    promoted_by=tags.get("champion.promoted_by", ""),
                    gate=tags.get("gate.decision", ""),
                    service=tags.get(SERVICE_TAG, ""),
                    window={
                        k.removeprefix("window."): v for k, v in params.items() if k.startswith("window.")
                    },
                )
            )
        health.versions.sort(key=lambda v: v.version)
    return out


# At most this many of a training window's snapshots, spread evenly over it, make the reference sample:
# monthly snapshots of one customer base hold nearly the same people, and reading them all at 100k
# customers costs seconds for no change in the bins.
REFERENCE_SNAPSHOTS = 4


def training_snapshots(window: dict[str, str], snapshots: list[pd.Timestamp]) -> list[pd.Timestamp]:
    """The snapshots a run trained on (its train split's first..last snapshot, thinned evenly to
    REFERENCE_SNAPSHOTS), or the one snapshot a segmentation was fitted on."""
    if window.get("train_first_snapshot") and window.get("train_last_snapshot"):
        first = pd.Timestamp(window["train_first_snapshot"])
        last = pd.Timestamp(window["train_last_snapshot"])
        inside = [s for s in snapshots if first <= s <= last]
        if len(inside) > REFERENCE_SNAPSHOTS:
            picks = np.linspace(0, len(inside) - 1, REFERENCE_SNAPSHOTS).round().astype(int)
            inside = [inside[i] for i in sorted(set(picks))]
        return inside
    if window.get("snapshot"):
        day = pd.Timestamp(window["snapshot"]).date()
        return [s for s in snapshots if s.date() == day]
    return []


def feature_drift(settings: Settings, models: list[ModelHealth]) -> pd.DataFrame:
    """PSI of every numeric feature, one column per champion (its training window against the latest
    snapshot). Rows: features; NaN where a champion's window cannot be found in the feature tables."""
    from models.drift import psi

    snapshots = sources.all_snapshots(settings)
    if not snapshots:
        return pd.DataFrame()
    windows = {}
    for model in models:
        champion = model.champion
        if champion is not None:
            found = training_snapshots(champion.window, snapshots)
            if found:
                windows[model.kind] = found
    if not windows:
        return pd.DataFrame()
    wanted = sorted({s for found in windows.values() for s in found} | {snapshots[-1]})
    frame = sources.snapshot_frame(settings, snapshots=wanted)
    numeric = [
        c
        for c in frame.columns
        if c not in ("customer_id", "event_timestamp") and pd.api.types.is_numeric_dtype(frame[c])
    ]
    stamps = frame["event_timestamp"]
    latest = frame[stamps == snapshots[-1]]
    result = {}
    for kind, found in windows.items():
        reference = frame[stamps.isin(found)]
        result[kind] = {
            f: psi(
                reference[f].to_numpy(dtype=float, na_value=np.nan),
                latest[f].to_numpy(dtype=float, na_value=np.nan),
                bins=settings.dashboard.psi_bins,
            )
            for f in numeric
        }
    return pd.DataFrame(result)


@dataclass
class ViewFreshness:
    view: str
    snapshot: pd.Timestamp | None
    age_days: float | None
    ttl_days: float | None
    status: str  # fresh | stale | missing


def view_freshness(settings: Settings, as_of: pd.Timestamp | None) -> list[ViewFreshness]:
    """Each feature view's latest snapshot, its age on the data's clock and whether it is past its TTL."""
    ttls = _view_ttls(settings)
    out = []
    for view, snapshot in sources.view_snapshots(settings).items():
        ttl = ttls.get(view)
        if snapshot is None:
            out.append(ViewFreshness(view, None, None, ttl, "missing"))
            continue
        age = None if as_of is None else max((as_of - snapshot).total_seconds() / 86400.0, 0.0)
        status = "stale" if age is not None and ttl is not None and age > ttl else "fresh"
        out.append(ViewFreshness(view, snapshot, age, ttl, status))
    return out


def _view_ttls(settings: Settings) -> dict[str, float]:
    """TTL (days) of each feature view, as the Feast repo declares it (the repo is the one source)."""
    try:
        from features.feast_io import get_store

        store = get_store(settings)
        return {v.name: v.ttl.total_seconds() / 86400.0 for v in store.list_feature_views() if v.ttl}
    except Exception:  # no Feast registry yet: freshness is still shown, without a TTL verdict
        return {}


def champions_key(models: list[ModelHealth]) -> tuple[Any, ...]:
    return tuple((m.kind, m.champion.version if m.champion else None) for m in models)

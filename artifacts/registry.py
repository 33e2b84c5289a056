"""The MLflow model registry as both sides see it: model names, tracking set-up, aliases, and loading a
registered version (what serving calls). Training's gate, promotion and comparison live in
`training.registry`, on top of this."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifacts.recommend_history import attach_history
from core.errors import RegistryError

if TYPE_CHECKING:
    from configs.settings import Settings

KINDS = ("segments", "churn", "conversion", "clv", "recommend", "uplift")
CHAMPION = "champion"
CHALLENGER = "challenger"
SERVICE_TAG = "feast.feature_service"
NONE = "none"
# The model code MLflow stores with every version (models-from-code) and the artifact it reads the
# bundle from; that file runs alone inside MLflow, so it keeps its own copy of the name.
PYFUNC_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
BUNDLE_ARTIFACT = "bundle"


def model_name(settings: Settings, kind: str) -> str:
    """Registered model (and experiment) name of a kind: `persona-churn`, ..."""
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    return f"{settings.mlflow.experiment_prefix}-{kind}"


# mlflow (about 2 s to import) is imported where used: this module is imported with serving.service,
# which BentoML's supervisor process and `bentoml build` import without ever loading a model.


def configure_tracking(settings: Settings) -> str:
    """Point MLflow at the configured tracking (and registry) URI, telemetry off; returns the URI.

    A SQLite URI gets its folder created, so a fresh data dir works without set-up."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = settings.url(settings.mlflow.tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(
        settings.url(settings.mlflow.registry_uri) if settings.mlflow.registry_uri else uri
    )
    return uri


def client(settings: Settings):
    """An MlflowClient on the configured tracking/registry URIs."""
    from mlflow import MlflowClient

    configure_tracking(settings)
    return MlflowClient()


def alias_version(mlflow_client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None  # no such model or alias


def champion_version(settings: Settings, kind: str, *, mlflow_client=None) -> str | None:
    """The version number (text) holding `champion`, or None."""
    c = mlflow_client or client(settings)
    mv = alias_version(c, model_name(settings, kind), CHAMPION)
    return None if mv is None else str(mv.version)


# ------------------------------------------------------------------------------------------ loading
@dataclass(frozen=True)
class LoadedModel:
    """What serving needs: the `models` bundle, its registry version, the FeatureService it was trained
    on, and the MLflow run that produced it."""

    bundle: Any
    version: str
    feature_service: str
    run_id: str


def load_version(settings: Settings, kind: str, version: str) -> LoadedModel:
    """Load one registered version's bundle (through pyfunc, so only `models` code is needed)."""
    import mlflow

    c = client(settings)
    name = model_name(settings, kind)
    try:
        mv = c.get_model_version(name, str(version))
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"cannot load {name} version {version}: {exc.message}") from None
    service = (mv.tags or {}).get(SERVICE_TAG)
    if not service:
        raise RegistryError(
            f"{name} version {version} has no '{SERVICE_TAG}' tag: which features it needs is unknown"
        )
    return LoadedModel(
        bundle=pyfunc.unwrap_python_model().bundle,
        version=str(mv.version),
        feature_service=service,
        run_id=mv.run_id or "",
    )


def load_champion(settings: Settings, kind: str) -> LoadedModel:
    """Load the `champion` of `kind` (the recommender with the current histories attached). Raises
    RegistryError if none."""
    c = client(settings)
    name = model_name(settings, kind)
    mv = alias_version(c, name, CHAMPION)
    if mv is None:
        raise RegistryError(
            f"no champion for {name} in {settings.url(settings.mlflow.tracking_uri)}",
            hint=f"train and promote one: persona train {kind}",
        )
    loaded = load_version(settings, kind, str(mv.version))
    if kind == "recommend":  # the histories are not in the registered model: see recommend_history
        loaded = replace(loaded, bundle=attach_history(settings, loaded.bundle))
    return loaded

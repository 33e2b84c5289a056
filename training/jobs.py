"""Training jobs: fit (LightGBM + logistic baseline, or segmentation), evaluate on the held-out test window,
log everything to MLflow, register a `challenger` version, run the gate and (optionally) promote.

`train_model(settings, kind, promote=False)` leaves `champion` alone and returns the decision, so
`training.retrain` can train and gate all models first and move aliases only at the end.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, silhouette_score

from artifacts.registry import champion_version, client, configure_tracking, load_version, model_name
from core.errors import RegistryError
from features.feast_io import get_store, training_frame
from models.classifier import fit_baseline, fit_classifier
from models.metrics import binary_metrics
from models.segmentation import adjusted_rand, fit_segmentation, segmentation_metrics
from training import mlflow_io
from training.registry import GateDecision, gate_classifier, gate_segments, mark_challenger, move_champion
from training.trainsets import (
    LABEL,
    ClassifierData,
    Sampling,
    SegmentData,
    classifier_data,
    sample_customers,
    segment_data,
)

if TYPE_CHECKING:
    from configs.settings import Settings

log = logging.getLogger(__name__)
ENTITY = ["customer_id", "event_timestamp"]


@dataclass
class TrainOutcome:
    """One trained model: its run, registered version, held-out metrics and the gate's decision."""

    kind: str
    run_id: str
    version: str
    service: str
    metrics: dict[str, float]
    decision: GateDecision
    champion_before: str | None
    promoted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- classifiers
def fit_classifiers(data: ClassifierData, settings: Settings) -> tuple[Any, Any]:
    """LightGBM and the logistic baseline on the same train/valid frames (pure model code)."""

    common = dict(
        kind=data.kind,
        train=data.train,
        valid=data.valid,
        features=data.features,
        label=LABEL,
        categorical=data.categorical,
        seed=settings.training.seed,
    )
    model = fit_classifier(**common, params=dict(settings.training.params) or None)
    baseline = fit_baseline(**common)
    return model, baseline


def validation_metrics(model: Any, baseline: Any, *, valid: pd.DataFrame) -> tuple[dict, dict]:
    """Validation metrics of the model and of the baseline: one prediction pass each, shared by the
    candidate's selection and the run's `valid_*` metrics and gate."""

    y = valid[LABEL].to_numpy()
    return binary_metrics(y, model.predict_proba(valid)), binary_metrics(y, baseline.predict_proba(valid))


def select_candidate(
    model: Any,
    baseline: Any,
    *,
    valid: pd.DataFrame,
    metric: str,
    scores: tuple[dict, dict] | None = None,
) -> tuple[Any, str]:
    """The version to register: LightGBM, unless the logistic baseline beats it on VALIDATION data.

    Chosen on validation, never on test, so the gate's test comparison stays honest. Shipping the
    baseline when it ranks better is what "never worse than the baseline" asks for; otherwise a small
    or simple data set would leave the model with no champion at all. `scores`: the two models'
    `validation_metrics` when already computed.
    """

    model_scores, baseline_scores = scores or validation_metrics(model, baseline, valid=valid)
    ours = model_scores.get(metric, float("nan"))
    theirs = baseline_scores.get(metric, float("nan"))
    if np.isfinite(theirs) and (not np.isfinite(ours) or theirs > ours):
        return baseline, f"logistic baseline: validation {metric} {theirs:.4f} > LightGBM's {ours:.4f}"
    return model, f"lightgbm: validation {metric} {ours:.4f} >= baseline's {theirs:.4f}"


def _score_champion(
    settings: Settings, data: ClassifierData, version: str, store: Any
) -> dict[str, float] | None:
    """The champion's metrics on the challenger's test window (re-fetching features if it was trained on
    another FeatureService). None when it cannot be scored (then the gate says so)."""

    try:
        loaded = load_version(settings, data.kind, version)
        test = data.test
        if loaded.feature_service != data.service or not set(loaded.bundle.features) <= set(test.columns):
            test = training_frame(
                store, entity_df=data.test[[*ENTITY, LABEL]], service=loaded.feature_service
            )
        return binary_metrics(test[LABEL].to_numpy(), loaded.bundle.predict_proba(test))
    except Exception as exc:  # an unloadable champion must not block a new model: record it instead
        log.warning("champion v%s of %s could not be scored: %s", version, data.kind, exc)
        return None


def evaluate_and_register(
    settings: Settings,
    *,
    data: ClassifierData,
    model: Any,
    baseline: Any,
    store: Any,
    promote: bool,
    selection: str = "lightgbm",
    valid_scores: tuple[dict, dict] | None = None,
) -> TrainOutcome:
    """Held-out metrics, champion comparison, gate; log the run and register the version as challenger.
    `valid_scores`: `validation_metrics(model, baseline)` when the caller already has them."""

    y_test = data.test[LABEL].to_numpy()
    proba = model.predict_proba(data.test)
    base_proba = baseline.predict_proba(data.test)
    metrics = binary_metrics(y_test, proba)
    base_metrics = binary_metrics(y_test, base_proba)
    valid_metrics, base_valid_metrics = valid_scores or validation_metrics(model, baseline, valid=data.valid)

    champion = current_champion(
        settings, data.kind, score=lambda version: _score_champion(settings, data, version, store)
    )
    champ_metrics = champion.metrics
    decision = gate_classifier(
        challenger=metrics,
        baseline=base_metrics,
        champion=champ_metrics,
        config=settings.training.gate,
        champion_version=champion.version,
        challenger_valid=valid_metrics,
        baseline_valid=base_valid_metrics,
    )
    importance = model.metadata.get("feature_importance_gain") or _permutation_importance(model, data)
    window = {**data.split.window(), "label_horizon_days": data.split.horizon_days}
    if data.sampling is not None:
        window["sampling"] = data.sampling.statement()
    logged = {
        **{f"test_{k}": v for k, v in metrics.items()},
        **{f"baseline_test_{k}": v for k, v in base_metrics.items()},
        **{f"valid_{k}": v for k, v in valid_metrics.items()},
        **{f"baseline_valid_{k}": v for k, v in base_valid_metrics.items()},
        **({f"champion_test_{k}": v for k, v in champ_metrics.items()} if champ_metrics else {}),
    }

    def artifacts(out: Path) -> dict[str, Path]:
        return mlflow_io.classifier_plots(
            y_true=y_test,
            curves={
                f"candidate ({model.metadata.get('model', 'lightgbm')})": proba,
                "logistic baseline": base_proba,
            },
            importance=importance,
            out_dir=out,
        )

    report_sections = [
        (
            "Held-out test window",
            pd.DataFrame(
                {
                    f"candidate ({model.metadata.get('model', 'lightgbm')})": metrics,
                    "logistic baseline": base_metrics,
                    **({"champion": champ_metrics} if champ_metrics else {}),
                }
            ),
        ),
        ("Data window", window),
        gate_section(decision, champion),
        (
            "Tiers",
            {"names": ", ".join(model.tier_names), "cuts": ", ".join(f"{c:.4f}" for c in model.tier_cuts)},
        ),
    ]
    return register_gated(
        settings,
        kind=data.kind,
        service=data.service,
        model=model,
        decision=decision,
        champion=champion,
        promote=promote,
        metrics=metrics,
        extra={"baseline": base_metrics, "champion": champ_metrics, "window": window},
        logged=logged,
        window=window,
        input_example=_example(data.test, data.features),
        make_artifacts=artifacts,
        report_sections=report_sections,
        datasets={"training": data.train, "validation": data.valid, "test": data.test},
        target=LABEL,
        extra_params={"candidate_selection": selection, **(data.sampling.params() if data.sampling else {})},
    )


def _permutation_importance(model: Any, data: ClassifierData, *, rows: int = 2000) -> dict[str, float]:
    """Drop in test ROC-AUC when one feature is shuffled (for models without built-in importance)."""

    sample = data.test.head(rows).reset_index(drop=True)
    y = sample[LABEL].to_numpy()
    if len(np.unique(y)) < 2:
        return {}
    base = roc_auc_score(y, model.predict_proba(sample))
    rng = np.random.default_rng(0)
    out = {}
    for name in data.features:
        shuffled = sample.copy()
        shuffled[name] = rng.permutation(shuffled[name].to_numpy())
        out[name] = float(base - roc_auc_score(y, model.predict_proba(shuffled)))
    return out


def train_classifier(
    settings: Settings, kind: str, *, promote: bool = True, store: Any = None
) -> TrainOutcome:
    """Train, evaluate, log and register the `kind` classifier ("churn" | "conversion")."""

    store = store or get_store(settings)
    data = classifier_data(settings, kind, store=store)
    model, baseline = fit_classifiers(data, settings)
    scores = validation_metrics(model, baseline, valid=data.valid)
    candidate, why = select_candidate(
        model, baseline, valid=data.valid, metric=settings.training.gate.primary_metric, scores=scores
    )
    log.info("%s candidate: %s", kind, why)
    # The validation pass above serves the run too: the candidate's scores, and the baseline's.
    candidate_scores = scores[0] if candidate is model else scores[1]
    return evaluate_and_register(
        settings,
        data=data,
        model=candidate,
        baseline=baseline,
        store=store,
        promote=promote,
        selection=why,
        valid_scores=(candidate_scores, scores[1]),
    )


# ------------------------------------------------------------------------------------ segmentation
def fit_segments(data: SegmentData, settings: Settings, *, reference: Any = None) -> tuple[Any, Sampling]:
    """The segmentation model on the latest snapshot's customers (pure model code), fitted on a hashed
    share of them above `training.segments.max_fit_customers` (K-means costs grow with the rows; the
    centroids of a few hundred thousand customers are as good). Returns the model and the sampling."""

    cfg = settings.training.segments
    seed = settings.training.seed
    fit_on, sampling = sample_customers(
        data.frame, max_rows=cfg.max_fit_customers, seed=seed, limit="training.segments.max_fit_customers"
    )
    model = fit_segmentation(
        X=fit_on,
        features=data.features,
        k=cfg.k,
        k_range=tuple(cfg.k_range),
        seed=seed,
        reference=reference,
        reference_X=fit_on if reference is not None else None,
    )
    log.info("segments fitted on the %s", sampling.statement())
    return model, sampling


def train_segments(settings: Settings, *, promote: bool = True, store: Any = None) -> TrainOutcome:
    """Segment the latest snapshot's customers; gate on silhouette and agreement with the champion."""

    store = store or get_store(settings)
    data = segment_data(settings, store=store)
    current = current_champion(settings, "segments")  # scored below, against the new partition
    before = current.version
    champion = None
    if before:
        try:
            champion = load_version(settings, "segments", before)
        except RegistryError as exc:
            log.warning("segments champion v%s could not be loaded: %s", before, exc)
    model, sampling = fit_segments(data, settings, reference=champion.bundle if champion else None)
    metrics = {k: float(v) for k, v in segmentation_metrics(model, data.frame).items() if _is_number(v)}
    ari = champion_silhouette = None
    silhouette = metrics.get("silhouette", float("nan"))
    if champion is not None:
        ours, theirs = model.predict(data.frame), champion.bundle.predict(data.frame)
        ari = float(adjusted_rand(theirs, ours))
        # both partitions scored in the challenger's scaled space, on the same sample of customers
        space = model.transform(data.frame)
        silhouette = _silhouette(space, ours, seed=settings.training.seed)
        champion_silhouette = _silhouette(space, theirs, seed=settings.training.seed)
        metrics.update(
            ari_vs_champion=ari, silhouette_same_space=silhouette, champion_silhouette=champion_silhouette
        )
    decision = gate_segments(
        silhouette=silhouette,
        ari_vs_champion=ari,
        config=settings.training.gate,
        champion_version=before if champion is not None else None,
        champion_silhouette=champion_silhouette,
    )
    labels = pd.Series(np.asarray(model.predict(data.frame)))
    sizes = {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}
    profiles = model.profiles()
    window = {
        "snapshot": data.snapshot.isoformat(),
        "rows": len(data.frame),
        "sampling": sampling.statement(),
    }

    def artifacts(out: Path) -> dict[str, Path]:
        return mlflow_io.segment_plots(profiles=profiles, sizes=sizes, out_dir=out)

    return register_gated(
        settings,
        kind="segments",
        service=data.service,
        model=model,
        decision=decision,
        champion=current,
        promote=promote,
        metrics=metrics,
        logged=metrics,
        window=window,
        input_example=_example(data.frame, data.features),
        make_artifacts=artifacts,
        report_sections=[
            ("Metrics", metrics),
            ("Data window", window),
            ("Segment sizes", sizes),
            ("Segment profiles", profiles),
            gate_section(decision, current),
        ],
        datasets={"training": data.frame},
        extra_params=sampling.params(),
        extra_artifacts={
            "segment_profiles.json": profiles.reset_index().to_dict(orient="records"),
            "segment_sizes.json": sizes,
        },
    )


def _silhouette(space: np.ndarray, labels: np.ndarray, *, seed: int, sample: int = 5000) -> float:
    """Silhouette of `labels` in `space` on a seeded sample (NaN with fewer than two segments)."""

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(silhouette_score(space, labels, sample_size=min(sample, len(labels)), random_state=seed))


def _example(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """A few rows of model input (features only, no ids). Integer counts become floats: after point-in-time
    retrieval a missing snapshot gives NaN, which an integer column of the signature would refuse."""
    example = frame[features].head(5).reset_index(drop=True)
    ints = [c for c in features if pd.api.types.is_integer_dtype(example[c])]
    return example.astype({c: "float64" for c in ints})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


# ------------------------------------------------------------------------------ gate and register
@dataclass(frozen=True)
class Champion:
    """The champion a challenger is judged against: its version (None: first model) and its metrics on the
    challenger's held-out data (None when there is none, or it could not be scored)."""

    mlflow_client: Any
    version: str | None
    metrics: dict[str, float] | None


def current_champion(
    settings: Settings, kind: str, *, score: Callable[[str], dict[str, float] | None] | None = None
) -> Champion:
    """The `champion` of `kind` now and, with `score`, its metrics on the challenger's window."""
    mlflow_client = client(settings)
    before = champion_version(settings, kind, mlflow_client=mlflow_client)
    metrics = score(before) if before and score is not None else None
    return Champion(mlflow_client, before, metrics)


def gate_section(decision: GateDecision, champion: Champion) -> tuple[str, dict[str, str]]:
    """The report's "Gate" section (every job's report has one, where the job puts it)."""
    return (
        "Gate",
        {
            "decision": "promote" if decision.promote else "reject",
            "reason": decision.reason,
            "previous champion": champion.version or "none",
        },
    )


def register_gated(
    settings: Settings,
    *,
    kind: str,
    service: str,
    model: Any,
    decision: GateDecision,
    champion: Champion,
    promote: bool,
    metrics: dict[str, float],
    logged: dict[str, float],
    extra: dict[str, Any] | None = None,
    **run: Any,
) -> TrainOutcome:
    """What every job does once its gate has decided: log the MLflow run and register the version
    (`_log_run`, with `run`'s arguments), tag it `challenger` with its FeatureService and the decision,
    and, with `promote` and a promoting decision, move `champion` to it (the promotion history records
    the compared metrics). `metrics` are the held-out metrics the outcome reports, `logged` what the run
    logs."""
    run_id, version = _log_run(
        settings, kind=kind, service=service, model=model, metrics=logged, decision=decision, **run
    )
    mark_challenger(
        settings,
        kind,
        version=version,
        service=service,
        decision=decision,
        mlflow_client=champion.mlflow_client,
    )
    log.info(
        "%s v%s: gate %s (%s)", kind, version, "promotes" if decision.promote else "rejects", decision.reason
    )
    outcome = TrainOutcome(
        kind=kind,
        run_id=run_id,
        version=version,
        service=service,
        metrics=metrics,
        decision=decision,
        champion_before=champion.version,
        extra=dict(extra or {}),
    )
    if promote and decision.promote:
        promote_gated(settings, outcome, mlflow_client=champion.mlflow_client)
    return outcome


def promote_gated(settings: Settings, outcome: TrainOutcome, *, mlflow_client: Any = None) -> str | None:
    """Move `champion` to a version the gate accepted (at once, or after every kind trained: retrain);
    the promotion history records the gate's reason and the numbers it compared. Returns the previous
    champion."""
    before = move_champion(
        settings,
        outcome.kind,
        version=outcome.version,
        promoted_by="gate",
        note=outcome.decision.reason,
        metrics=outcome.decision.compared,
        mlflow_client=mlflow_client,
    )
    outcome.promoted = True
    return before


# ------------------------------------------------------------------------------------------ logging
def _log_run(
    settings: Settings,
    *,
    kind: str,
    service: str,
    model: Any,
    metrics: dict[str, float],
    window: dict[str, Any],
    decision: GateDecision,
    input_example: pd.DataFrame,
    make_artifacts: Callable[[Path], dict[str, Path]],
    report_sections: list[tuple[str, Any]],
    datasets: dict[str, pd.DataFrame],
    target: str | None = None,
    extra_params: dict[str, Any] | None = None,
    extra_artifacts: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """One MLflow run: a description of what was trained on what, hyperparameters, seed, commit, window,
    service, the splits as dataset inputs, metrics, the configuration (config.json), plots, report,
    model. Returns (run_id, registered version)."""

    configure_tracking(settings)
    experiment_id = mlflow_io.ensure_experiment(settings, kind)
    name = model_name(settings, kind)
    commit = mlflow_io.git_commit()
    service_name, service_version = mlflow_io.service_version(service)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{kind}-{pd.Timestamp.now(tz='UTC'):%Y%m%d-%H%M%S}",
        description=mlflow_io.describe_run(
            kind=kind, model=model, service=service, window=window, commit=commit
        ),
    ) as run:
        mlflow.set_tags({"persona.kind": kind, "git_commit": commit, "feast.feature_service": service})
        # The whole configuration goes in config.json (one artifact, secrets masked), not in params.
        params = {
            **mlflow_io.hyperparameters(model),
            "seed": settings.training.seed,
            "git_commit": commit,
            "feature_service": service,
            "feature_service_name": service_name,
            "feature_service_version": service_version if service_version is not None else "",
            "features": ",".join(model.features) if hasattr(model, "features") else "",
            **{f"window.{k}": v for k, v in window.items()},
            **(extra_params or {}),
        }
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow_io.log_datasets(
            datasets,
            features=list(model.features),
            service=service,
            source=settings.path(settings.feast.source_dir).resolve().as_uri(),
            target=target,
        )
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        mlflow_io.log_json(mlflow_io.mask_secrets(settings.model_dump(mode="json")), "config.json")
        mlflow_io.log_json({"window": window, "metrics": metrics, "gate": decision.tags()}, "summary.json")
        for file_name, payload in (extra_artifacts or {}).items():
            mlflow_io.log_json(payload, file_name)
        with tempfile.TemporaryDirectory() as tmp:
            images = make_artifacts(Path(tmp) / "plots")
            mlflow.log_artifacts(str(Path(tmp) / "plots"), artifact_path="plots")
            page = mlflow_io.html_report(
                title=f"{name}: run {run.info.run_id[:8]} ({service}, commit {commit[:12]})",
                sections=report_sections,
                images=images,
            )
            mlflow.log_text(page, "report.html")
        info = mlflow_io.log_bundle(
            bundle=model, kind=kind, input_example=input_example, registered_model_name=name
        )
    version = str(info.registered_model_version)
    return run.info.run_id, version


# -------------------------------------------------------------------------------------------- entry
def train_model(settings: Settings, kind: str, *, promote: bool = True, store: Any = None) -> TrainOutcome:
    """Train one kind ("segments" | "churn" | "conversion" | "clv" | "recommend" | "uplift")."""
    if kind == "segments":
        return train_segments(settings, promote=promote, store=store)
    if kind in ("churn", "conversion"):
        return train_classifier(settings, kind, promote=promote, store=store)
    if kind == "clv":
        from training.value import train_value  # here: training.value imports this module (a cycle)

        return train_value(settings, promote=promote, store=store)
    if kind == "recommend":
        from training.recommend import train_recommend

        return train_recommend(settings, promote=promote, store=store)
    if kind == "uplift":
        from training.uplift import train_uplift

        return train_uplift(settings, promote=promote, store=store)
    raise RegistryError(
        f"unknown model kind {kind!r}; expected segments, churn, conversion, clv, recommend or uplift"
    )

"""The customer-value (CLV) training job: spend over `training.clv_horizon_days` from the `clv` FeatureService.

Three candidates fitted on the same purged time split: LightGBM Tweedie on the BG/NBD x Gamma-Gamma offset,
BG/NBD x Gamma-Gamma alone (fitted on the histories at the latest training snapshot) and the naive rate.
The one with the lowest validation MAE is registered; held-out test metrics of all three are logged;
the gate (`training.registry.gate_value`) promotes it only if its test MAE is no worse than either
baseline's and beats the champion's on the same window.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from artifacts.registry import load_version
from models.clv import fit_btyd_value, fit_clv_regressor, rate_value, value_metrics
from training import mlflow_io
from training.jobs import ENTITY, TrainOutcome, _example, current_champion, gate_section, register_gated
from training.registry import gate_value
from training.trainsets import LABEL, ValueData, value_data

if TYPE_CHECKING:
    from configs.settings import Settings

log = logging.getLogger(__name__)
KIND = "clv"


def fit_value_models(data: ValueData, *, seed: int) -> dict[str, Any]:
    """The three candidates, each with tiers cut on validation (pure model code)."""

    last = data.train["event_timestamp"].max()
    btyd = fit_btyd_value(data.train[data.train["event_timestamp"] == last], horizon_days=data.horizon_days)
    btyd = btyd.with_tiers(btyd.predict(data.valid))
    rate = rate_value(horizon_days=data.horizon_days)
    rate = rate.with_tiers(rate.predict(data.valid))
    lightgbm = fit_clv_regressor(
        train=data.train,
        valid=data.valid,
        features=data.features,
        label=LABEL,
        horizon_days=data.horizon_days,
        offset=btyd,
        categorical=data.categorical,
        seed=seed,
    )
    return {"lightgbm": lightgbm, "bgnbd_gamma_gamma": btyd, "naive_rate": rate}


def select_value_candidate(models: dict[str, Any], valid: pd.DataFrame) -> tuple[str, str]:
    """The model with the lowest validation MAE (never chosen on test), and why."""

    mae = {name: value_metrics(valid[LABEL], m.predict(valid))["mae"] for name, m in models.items()}
    best = min(mae, key=mae.get)
    others = ", ".join(f"{n} {v:.3f}" for n, v in mae.items() if n != best)
    return best, f"{best}: validation MAE {mae[best]:.3f} (others: {others})"


def _score_champion(settings: Settings, data: ValueData, version: str, store: Any) -> dict[str, float] | None:
    """The champion's metrics on the challenger's test window; None when it cannot be scored."""
    from features.feast_io import training_frame

    try:
        loaded = load_version(settings, KIND, version)
        test = data.test
        if loaded.feature_service != data.service or not set(loaded.bundle.features) <= set(test.columns):
            test = training_frame(
                store, entity_df=data.test[[*ENTITY, LABEL]], service=loaded.feature_service
            )
        return value_metrics(test[LABEL], loaded.bundle.predict(test))
    except Exception as exc:  # an unloadable champion must not block a new model: record it instead
        log.warning("champion v%s of %s could not be scored: %s", version, KIND, exc)
        return None


def train_value(settings: Settings, *, promote: bool = True, store: Any = None) -> TrainOutcome:
    """Train, evaluate, log and register the value model; gate it and (with `promote`) move `champion`."""
    from features.feast_io import get_store

    store = store or get_store(settings)
    data = value_data(settings, store=store)
    models = fit_value_models(data, seed=settings.training.seed)
    chosen, why = select_value_candidate(models, data.valid)
    log.info("clv candidate: %s", why)
    model = models[chosen]
    y_test = data.test[LABEL].to_numpy(dtype="float64")
    predictions = {name: m.predict(data.test) for name, m in models.items()}
    metrics = value_metrics(y_test, predictions[chosen])
    baselines = {
        name: value_metrics(y_test, predictions[name]) for name in ("bgnbd_gamma_gamma", "naive_rate")
    }
    valid_metrics = value_metrics(data.valid[LABEL], model.predict(data.valid))

    champion = current_champion(
        settings, KIND, score=lambda version: _score_champion(settings, data, version, store)
    )
    champ_metrics = champion.metrics
    decision = gate_value(
        challenger=metrics,
        baselines={k: v for k, v in baselines.items() if k != chosen},
        champion=champ_metrics,
        config=settings.training.gate,
        champion_version=champion.version,
    )
    window = {**data.split.window(), "label_horizon_days": data.horizon_days}
    if data.sampling is not None:
        window["sampling"] = data.sampling.statement()
    logged = {
        **{f"test_{k}": v for k, v in metrics.items()},
        **{f"{name}_test_{k}": v for name, m in baselines.items() for k, v in m.items()},
        **{f"valid_{k}": v for k, v in valid_metrics.items()},
        **({f"champion_test_{k}": v for k, v in champ_metrics.items()} if champ_metrics else {}),
    }
    importance = models["lightgbm"].metadata.get("feature_importance_gain", {})
    labels = {name: f"{name}{' (candidate)' if name == chosen else ''}" for name in models}

    def artifacts(out: Path) -> dict[str, Path]:
        return mlflow_io.value_plots(
            actual=y_test,
            predictions={labels[n]: p for n, p in predictions.items()},
            importance=importance,
            out_dir=out,
        )

    tiers = pd.Series(model.tiers(predictions[chosen])).value_counts().to_dict()
    return register_gated(
        settings,
        kind=KIND,
        service=data.service,
        model=model,
        decision=decision,
        champion=champion,
        promote=promote,
        metrics=metrics,
        logged=logged,
        extra={"baselines": baselines, "champion": champ_metrics, "selection": why},
        window=window,
        input_example=_example(data.test, model.features),
        make_artifacts=artifacts,
        datasets={"training": data.train, "validation": data.valid, "test": data.test},
        target=LABEL,
        report_sections=[
            (
                "Held-out test window",
                pd.DataFrame(
                    {
                        labels[chosen]: metrics,
                        **{labels[n]: m for n, m in baselines.items() if n != chosen},
                        **({"champion": champ_metrics} if champ_metrics else {}),
                    }
                ),
            ),
            ("Data window", window),
            gate_section(decision, champion),
            (
                "Value tiers (cut on validation)",
                {
                    "names": ", ".join(model.tier_names),
                    "cuts": ", ".join(f"{c:.2f}" for c in model.tier_cuts),
                    "test customers per tier": ", ".join(f"{k} {v}" for k, v in tiers.items()),
                },
            ),
        ],
        extra_params={
            "model": model.metadata.get("model", chosen),
            "best_iteration": model.metadata.get("best_iteration", ""),
            "candidate_selection": why,
            **(data.sampling.params() if data.sampling else {}),
            **{f"bgnbd.{k}": v for k, v in models["bgnbd_gamma_gamma"].metadata.items() if k != "model"},
        },
    )

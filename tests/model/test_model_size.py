"""The churn model's size is set by `training.params` (learning rate, round cap, leaves): the values reach
LightGBM through the training job's own path and are logged on the run with the number of trees kept,
so a run says how big its model is and why. (Whether the defaults keep the tree count bounded as the data
grows is measured by `scripts/model_size.py` on generated worlds of two sizes, not asserted here.)"""

from __future__ import annotations

import pytest

from configs.settings import load_settings
from models.classifier import DEFAULT_EARLY_STOPPING, DEFAULT_LGB_PARAMS, DEFAULT_NUM_BOOST_ROUND
from tests.model.test_gate_shuffled_labels import make_data
from training.jobs import fit_classifiers
from training.mlflow_io import hyperparameters


def _fit(data_dir, params: dict):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=str(data_dir), training={"params": params})
    model, _ = fit_classifiers(make_data(seed=4), settings)
    return model


def test_round_cap_and_learning_rate_from_training_params_reach_lightgbm_and_are_logged(tmp_path) -> None:
    # patience past the cap: without the cap reaching LightGBM, training would run on past 6 rounds
    model = _fit(tmp_path, {"num_boost_round": 6, "early_stopping_rounds": 500, "learning_rate": 0.2})
    booster = model.estimator.booster
    assert 1 <= booster.num_trees() <= 6
    assert booster.params["learning_rate"] == pytest.approx(0.2)  # what LightGBM itself trained with
    logged = hyperparameters(model)
    assert logged["model.num_boost_round"] == 6
    assert logged["model.early_stopping_rounds"] == 500
    assert logged["model.learning_rate"] == pytest.approx(0.2)
    assert logged["best_iteration"] == booster.num_trees()


def test_defaults_are_what_the_run_logs(tmp_path) -> None:
    model = _fit(tmp_path, {})
    booster = model.estimator.booster
    logged = hyperparameters(model)
    assert logged["model.num_boost_round"] == DEFAULT_NUM_BOOST_ROUND
    assert logged["model.early_stopping_rounds"] == DEFAULT_EARLY_STOPPING
    for key in ("learning_rate", "num_leaves"):
        assert logged[f"model.{key}"] == DEFAULT_LGB_PARAMS[key]
        assert float(booster.params[key]) == pytest.approx(DEFAULT_LGB_PARAMS[key])
    assert 1 <= booster.num_trees() <= DEFAULT_NUM_BOOST_ROUND
    assert logged["best_iteration"] == booster.num_trees()

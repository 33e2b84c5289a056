"""The training code on public datasets (read in place from the shared data folder): held-out ROC-AUC of
LightGBM must beat the published floors. Skipped, with the reason, only when the data folder is absent.

Bank Marketing (a decision of the project, issue 10): its honest evaluation is the time-ordered split, and
its floor is that the model training would ship is never worse than the logistic baseline on validation.
The random split's 0.79 is no floor: it stays in BENCHMARKS.md as a labelled comparison only."""

from __future__ import annotations

import pytest

from training.datasets import evaluate_dataset, load_dataset, load_mapping, shared_data_dir, split_dataset

SEED = 7
# Floors on test ROC-AUC (LightGBM). Bank Marketing has none: its time-ordered evaluation is tested below
# against the logistic baseline; the random split's published 0.79 is a reference to compare with.
FLOORS = {"telco_churn": 0.84, "x_education_leads": 0.87}
RANDOM_SPLIT_REFERENCE = 0.79  # bank_marketing_random, LightGBM: the published figure (random split)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not shared_data_dir().is_dir(),
        reason=f"public datasets not found at {shared_data_dir()} (set PERSONA_SHARED_DATA to run these)",
    ),
]


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_lightgbm_beats_the_floor(name):
    result = evaluate_dataset(load_mapping(name), seed=SEED)
    lgb, base = result["lightgbm"], result["baseline"]
    assert lgb["roc_auc"] > FLOORS[name], result
    # The baseline is a real competitor, not a strawman: within 0.05 of the floor as well.
    assert base["roc_auc"] > FLOORS[name] - 0.05, result
    assert 0 < lgb["brier"] < result["test_positive_rate"]  # better than always guessing the base rate
    assert result["n_train"] + result["n_valid"] + result["n_test"] == result["n_rows"]


def test_time_ordered_bank_split_respects_time():
    mapping = load_mapping("bank_marketing")
    data = load_dataset(mapping)
    train, valid, test = split_dataset(data.frame, split=mapping.split, seed=SEED)
    n = len(data.frame)
    # Ordered: train strictly before valid, valid strictly before test; nothing shuffled.
    assert train.index.max() < valid.index.min() and valid.index.max() < test.index.min()
    assert list(train.index) == list(range(len(train)))
    # Test = the latest 20% of calls; validation = the 5% just before it.
    assert len(test) == n - int(n * 0.8) and len(valid) == int(n * 0.8) - int(n * 0.75)
    # Leaking (`duration`) and period-identifying columns (monthly macro indicators, `month`) are out.
    for col in (
        "duration",
        "euribor3m",
        "nr_employed",
        "emp_var_rate",
        "cons_price_idx",
        "cons_conf_idx",
        "month",
    ):
        assert col not in data.features
    result = evaluate_dataset(mapping, seed=SEED)
    # The later months convert far more often (drift), and the result reports it.
    assert result["test_positive_rate"] > 2 * result["train_positive_rate"]
    assert result["train_positive_rate"] == pytest.approx(train["label"].mean())
    # Ranking under drift: better than chance for both models, yet (honestly) below the random-split figure.
    assert result["lightgbm"]["roc_auc"] > 0.65 and result["baseline"]["roc_auc"] > 0.65, result
    assert result["lightgbm"]["roc_auc"] < RANDOM_SPLIT_REFERENCE, result
    # The floor: what training ships is never worse than the logistic baseline on validation.
    metric = result["shipped_metric"]
    shipped = result[f"valid_{result['shipped']}"][metric]
    assert shipped >= result["valid_baseline"][metric], result
    assert shipped >= result["valid_lightgbm"][metric], result


def test_bank_random_split_score_is_period_recognition():
    """Why the ordered figure cannot reach 0.79: on the random split, the five monthly macro indicators alone
    (which only say when a call was made) already score about as well as every column together."""
    mapping = load_mapping("bank_marketing_random_macro_only")
    data = load_dataset(mapping)
    assert sorted(data.features) == [
        "cons_conf_idx",
        "cons_price_idx",
        "emp_var_rate",
        "euribor3m",
        "nr_employed",
    ]
    result = evaluate_dataset(mapping, seed=SEED)
    assert result["lightgbm"]["roc_auc"] > RANDOM_SPLIT_REFERENCE - 0.02, result

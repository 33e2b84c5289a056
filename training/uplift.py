"""Uplift targeting from a finished campaign: compare meta-learners on held-out customers, pick one on
validation, log to MLflow, gate, and fix the `uplift_tier` thresholds.

Protocol (one split seed): customers split 70/30 into train/test, stratified on arm and outcome; inside
train, 25 % is held out for validation. Every candidate (learner x base) is fitted on the rest of train
and scored on validation; the best validation Qini is the one chosen. Every candidate, refitted on the
whole train split, is then scored on test, beside random scores (the floor). Repeated over the split
seeds; the test figures are means (and standard deviations) over seeds. The test split never chooses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import ValidationFailed
from models.uplift import BASES, LEARNERS, fit_uplift, qini_auc_score, uplift_auc_score, uplift_tiers

CANDIDATES: tuple[tuple[str, str], ...] = tuple((learner, base) for learner in LEARNERS for base in BASES)
RANDOM = "random"


@dataclass
class UpliftData:
    """Covariates (numeric + categorical columns of `frame`), 0/1 treatment, 0/1 outcome, and the arm
    used with the outcome to stratify splits."""

    frame: pd.DataFrame
    treatment: np.ndarray
    outcome: np.ndarray
    numeric: list[str]
    categorical: list[str]
    strata: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.treatment = np.asarray(self.treatment, dtype=int)
        self.outcome = np.asarray(self.outcome, dtype=int)
        if self.strata is None:
            self.strata = self.treatment
        self.strata = pd.Series(self.strata).astype(str).to_numpy() + "|" + self.outcome.astype(str)

    def take(self, idx: np.ndarray) -> UpliftData:
        return UpliftData(
            self.frame.iloc[idx].reset_index(drop=True),
            self.treatment[idx],
            self.outcome[idx],
            self.numeric,
            self.categorical,
            strata=pd.Series(self.strata[idx]).str.split("|").str[0].to_numpy(),
        )


def _split(strata: np.ndarray, *, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(strata.size)
    return train_test_split(idx, test_size=test_size, stratify=strata, random_state=seed)


def _fit(data: UpliftData, learner: str, base: str, seed: int):
    return fit_uplift(
        data.frame,
        treatment=data.treatment,
        outcome=data.outcome,
        learner=learner,
        base=base,
        numeric=data.numeric,
        categorical=data.categorical,
        seed=seed,
    )


def _name(candidate: tuple[str, str]) -> str:
    return f"{candidate[0]}_{candidate[1]}"


def evaluate_protocol(
    data: UpliftData,
    *,
    seeds: Sequence[int] = range(10),
    candidates: Sequence[tuple[str, str]] = CANDIDATES,
    test_size: float = 0.3,
    valid_size: float = 0.25,
) -> dict:
    """Run the protocol over `seeds`; returns per-seed rows and per-model mean/sd of test Qini and AUUC,
    the chosen model per seed, and the test Qini of the chosen ones."""
    if data.treatment.min() == data.treatment.max():
        raise ValidationFailed("uplift: the campaign has only one of treated / control")
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        train_idx, test_idx = _split(data.strata, test_size=test_size, seed=seed)
        train, test = data.take(train_idx), data.take(test_idx)
        fit_idx, valid_idx = _split(train.strata, test_size=valid_size, seed=seed)
        fit_part, valid = train.take(fit_idx), train.take(valid_idx)
        valid_qini = {}
        for c in candidates:
            model = _fit(fit_part, *c, seed)
            valid_qini[_name(c)] = qini_auc_score(valid.outcome, model.predict(valid.frame), valid.treatment)
        chosen = max(valid_qini, key=valid_qini.get)
        test_qini, test_auuc = {}, {}
        for c in candidates:
            scores = _fit(train, *c, seed).predict(test.frame)
            test_qini[_name(c)] = qini_auc_score(test.outcome, scores, test.treatment)
            test_auuc[_name(c)] = uplift_auc_score(test.outcome, scores, test.treatment)
        noise = np.random.default_rng(seed).random(len(test_idx))
        test_qini[RANDOM] = qini_auc_score(test.outcome, noise, test.treatment)
        test_auuc[RANDOM] = uplift_auc_score(test.outcome, noise, test.treatment)
        rows.append(
            {
                "seed": seed,
                "chosen": chosen,
                "valid_qini": valid_qini,
                "test_qini": test_qini,
                "test_auuc": test_auuc,
                "seconds": time.perf_counter() - started,
            }
        )
    names = [_name(c) for c in candidates] + [RANDOM]

    def stats(key: str, name: str) -> dict[str, float]:
        values = np.array([r[key][name] for r in rows])
        return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0}

    chosen_test = np.array([r["test_qini"][r["chosen"]] for r in rows])
    return {
        "n": len(data.outcome),
        "seeds": list(seeds),
        "models": {n: {"qini": stats("test_qini", n), "auuc": stats("test_auuc", n)} for n in names},
        "chosen": {
            "per_seed": [r["chosen"] for r in rows],
            "qini": {
                "mean": float(chosen_test.mean()),
                "sd": float(chosen_test.std(ddof=1)) if chosen_test.size > 1 else 0.0,
            },
        },
        "rows": rows,
    }


def choose_on_validation(
    data: UpliftData,
    *,
    seed: int,
    candidates: Sequence[tuple[str, str]] = CANDIDATES,
    valid_size: float = 0.25,
) -> tuple[tuple[str, str], dict[str, float]]:
    """The candidate with the best Qini on a validation split of `data` (what a final fit uses)."""
    fit_idx, valid_idx = _split(data.strata, test_size=valid_size, seed=seed)
    fit_part, valid = data.take(fit_idx), data.take(valid_idx)
    qini = {}
    for c in candidates:
        model = _fit(fit_part, *c, seed)
        qini[_name(c)] = qini_auc_score(valid.outcome, model.predict(valid.frame), valid.treatment)
    best = max(candidates, key=lambda c: qini[_name(c)])
    return best, qini


@dataclass
class UpliftBundle:
    """What is registered: the fitted model and the tier thresholds fixed at training time."""

    model: object
    min_uplift: float
    response_threshold: float
    outcome: str
    campaign: str

    def tiers(self, frame: pd.DataFrame) -> np.ndarray:
        p_t, p_c = self.model.predict_arms(frame)
        return uplift_tiers(p_t, p_c, min_uplift=self.min_uplift, response_threshold=self.response_threshold)


def fit_bundle(
    data: UpliftData, *, candidate: tuple[str, str], seed: int, campaign: str, outcome: str
) -> UpliftBundle:
    """Fit the chosen candidate on every customer and fix the tier thresholds: an uplift counts when it
    exceeds a quarter of the average treatment effect (so about the weakest responders are not called
    persuadable), and "responds anyway" means a control probability above the control arm's rate."""
    model = _fit(data, *candidate, seed)
    ate = data.outcome[data.treatment == 1].mean() - data.outcome[data.treatment == 0].mean()
    control_rate = float(data.outcome[data.treatment == 0].mean())
    return UpliftBundle(model, float(abs(ate) / 4), control_rate, outcome, campaign)

"""Uplift targeting from a finished campaign: compare meta-learners on held-out customers, pick one on
validation, log to MLflow, gate, and fix the `uplift_tier` thresholds.

Protocol (one split seed): customers split 70/30 into train/test, stratified on arm and outcome; inside
train, 25 % is held out for validation. Every candidate (learner x base) is fitted on the rest of train
and scored on validation; the best validation Qini is the one chosen. A second choice uses 5-fold
cross-validated Qini on train (every train customer scored once, out of fold): steadier, and what the
registered model (`train_uplift`) uses. Every candidate, refitted on the
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
from models.uplift import BASES, LEARNERS, fit_uplift, qini_auc_score, uplift_auc_score

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
    folds: int = 5,
) -> dict:
    """Run the protocol over `seeds`; returns per-seed rows and per-model mean/sd of test Qini and AUUC,
    the model chosen per seed (on one validation split, and by `folds`-fold cross-validated Qini on the
    train split: what `persona train uplift` uses), and the test Qini of the chosen ones."""
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
        chosen_cv = _name(choose_by_cross_validation(train, seed=seed, candidates=candidates, folds=folds)[0])
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
                "chosen_cv": chosen_cv,
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
    chosen_cv_test = np.array([r["test_qini"][r["chosen_cv"]] for r in rows])
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
        "chosen_cv": {
            "per_seed": [r["chosen_cv"] for r in rows],
            "qini": {
                "mean": float(chosen_cv_test.mean()),
                "sd": float(chosen_cv_test.std(ddof=1)) if chosen_cv_test.size > 1 else 0.0,
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


def choose_by_cross_validation(
    data: UpliftData,
    *,
    seed: int,
    candidates: Sequence[tuple[str, str]] = CANDIDATES,
    folds: int = 5,
) -> tuple[tuple[str, str], dict[str, float]]:
    """The candidate with the best mean Qini over `folds` stratified folds of `data` (each fold scored
    by a model fitted on the others). Every customer votes once, so the choice is steadier than one
    25 % validation split, whose Qini sd is about as large as the gaps between candidates."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold: dict[str, list[float]] = {_name(c): [] for c in candidates}
    for fit_idx, valid_idx in splitter.split(np.zeros(data.strata.size), data.strata):
        fit_part, valid = data.take(fit_idx), data.take(valid_idx)
        for c in candidates:
            scores = _fit(fit_part, *c, seed).predict(valid.frame)
            per_fold[_name(c)].append(qini_auc_score(valid.outcome, scores, valid.treatment))
    qini = {name: float(np.mean(values)) for name, values in per_fold.items()}
    best = max(candidates, key=lambda c: qini[_name(c)])
    return best, qini


# ---------------------------------------------------------------------------------- the registered model
KIND = "uplift"
TEST_SIZE = 0.3


@dataclass
class UpliftTrainSet:
    """Every customer of the finished campaigns with their features as of the campaign's start (point in
    time: nothing the treatment could have moved), split into train and test."""

    service: str
    campaigns: list[str]
    outcome: str
    train: UpliftData
    test: UpliftData
    test_entities: pd.DataFrame  # customer_id, event_timestamp, treated, outcome of the test customers
    left_out: list[str]

    def window(self) -> dict[str, str | int]:
        return {
            "campaigns": ",".join(self.campaigns),
            "outcome": self.outcome,
            "train_customers": int(self.train.outcome.size),
            "test_customers": int(self.test.outcome.size),
            "left_out": "; ".join(self.left_out),
        }


def uplift_train_set(settings, *, store) -> UpliftTrainSet:
    """Finished campaigns (artifacts.campaigns) -> features at each start -> stratified train/test split.
    Skipped (StageSkipped, the other models still train) when there is nothing to learn from yet."""
    from artifacts.campaigns import finished_campaigns
    from core.errors import StageSkipped
    from features.feast_io import service_features, training_frame
    from training.trainsets import categorical_features, choose_service

    found, left_out = finished_campaigns(settings)
    if not found:
        why = (
            "; ".join(left_out) or "none stored: persona campaign create / assign, then let its window close"
        )
        raise StageSkipped(f"uplift model skipped: no finished campaign with a 0/1 outcome yet ({why})")
    rows = pd.concat(
        [
            c.frame.assign(campaign=c.spec.name, event_timestamp=pd.Timestamp(c.spec.start, tz="UTC"))
            for c in found
        ],
        ignore_index=True,
    )
    for name, part in (("treated", rows[rows.treated == 1]), ("control", rows[rows.treated == 0])):
        if part.outcome.nunique() < 2 or len(part) < 20:
            raise StageSkipped(
                f"uplift model skipped: the {name} customers of {', '.join(c.spec.name for c in found)} "
                f"({len(part)}) need at least 20 and both outcomes"
            )
    service = choose_service(settings, KIND, store=store)
    features = service_features(store, service)
    frame = training_frame(
        store,
        entity_df=rows[["customer_id", "event_timestamp", "campaign", "treated", "outcome"]],
        service=service,
    )
    categorical = categorical_features(frame, features)
    data = UpliftData(
        frame[features],
        treatment=frame.treated.to_numpy(),
        outcome=frame.outcome.to_numpy(),
        numeric=[f for f in features if f not in categorical],
        categorical=categorical,
        strata=(frame.campaign.astype(str) + ":" + frame.treated.astype(str)).to_numpy(),
    )
    train_idx, test_idx = _split(data.strata, test_size=TEST_SIZE, seed=settings.training.seed)
    outcomes = sorted({c.spec.outcome.label for c in found})
    return UpliftTrainSet(
        service=service,
        campaigns=[c.spec.name for c in found],
        outcome="/".join(outcomes),
        train=data.take(train_idx),
        test=data.take(test_idx),
        test_entities=frame.iloc[test_idx][
            ["customer_id", "event_timestamp", "treated", "outcome"]
        ].reset_index(drop=True),
        left_out=left_out,
    )


def uplift_metrics(outcome: np.ndarray, scores: np.ndarray, treatment: np.ndarray) -> dict[str, float]:
    return {
        "qini": qini_auc_score(outcome, scores, treatment),
        "auuc": uplift_auc_score(outcome, scores, treatment),
    }


def _score_champion(settings, data: UpliftTrainSet, version: str, store) -> dict[str, float] | None:
    """The champion's Qini/AUUC on the challenger's test customers; None when it cannot be scored."""
    import logging

    from artifacts.registry import load_version
    from features.feast_io import training_frame

    try:
        loaded = load_version(settings, KIND, version)
        test = data.test.frame
        if loaded.feature_service != data.service or not set(loaded.bundle.features) <= set(test.columns):
            test = training_frame(
                store,
                entity_df=data.test_entities[["customer_id", "event_timestamp"]],
                service=loaded.feature_service,
            )
        return uplift_metrics(data.test.outcome, loaded.bundle.predict(test), data.test.treatment)
    except Exception as exc:  # an unloadable champion must not block a new model: record it instead
        logging.getLogger(__name__).warning("champion v%s of uplift could not be scored: %s", version, exc)
        return None


def train_uplift(settings, *, promote: bool = True, store=None):
    """Train the uplift model from the finished campaigns: candidates (learner x base) compared by 5-fold
    cross-validated Qini on the train customers, the best refitted on them, evaluated on held-out test
    customers beside a random ranking and the champion, logged to MLflow, registered, gated."""
    from pathlib import Path

    from features.feast_io import get_store
    from models.uplift import fit_bundle
    from training import mlflow_io
    from training.jobs import _example, current_champion, gate_section, register_gated
    from training.registry import gate_uplift

    store = store or get_store(settings)
    data = uplift_train_set(settings, store=store)
    seed = settings.training.seed
    chosen, cv_qini = choose_by_cross_validation(data.train, seed=seed, folds=_folds(data.train))
    why = (
        f"{_name(chosen)}: 5-fold Qini {cv_qini[_name(chosen)]:.4f} on train ("
        + ", ".join(f"{n} {q:.4f}" for n, q in cv_qini.items() if n != _name(chosen))
        + ")"
    )
    bundle = fit_bundle(
        data.train.frame,
        treatment=data.train.treatment,
        outcome=data.train.outcome,
        learner=chosen[0],
        base=chosen[1],
        numeric=data.train.numeric,
        categorical=data.train.categorical,
        seed=seed,
        outcome_name=data.outcome,
        campaigns=data.campaigns,
    )
    test = data.test
    scores, tiers = bundle.score(test.frame)
    noise = np.random.default_rng(seed).random(test.outcome.size)
    metrics = uplift_metrics(test.outcome, scores, test.treatment)
    baseline = uplift_metrics(test.outcome, noise, test.treatment)
    champion = current_champion(
        settings, KIND, score=lambda version: _score_champion(settings, data, version, store)
    )
    champ = champion.metrics
    decision = gate_uplift(
        challenger=metrics,
        baseline=baseline,
        champion=champ,
        config=settings.training.gate,
        champion_version=champion.version,
    )
    counts = pd.Series(tiers).value_counts().to_dict()
    logged = {
        **{f"test_{k}": v for k, v in metrics.items()},
        **{f"random_test_{k}": v for k, v in baseline.items()},
        **{f"cv_qini_{n}": v for n, v in cv_qini.items()},
        **({f"champion_test_{k}": v for k, v in champ.items()} if champ else {}),
        "test_ate": float(
            test.outcome[test.treatment == 1].mean() - test.outcome[test.treatment == 0].mean()
        ),
    }

    def artifacts(out: Path) -> dict[str, Path]:
        return mlflow_io.uplift_plots(
            outcome=test.outcome,
            treatment=test.treatment,
            scores={f"{bundle.model.name} (candidate)": scores, "random": noise},
            out_dir=out,
        )

    window = data.window()
    return register_gated(
        settings,
        kind=KIND,
        service=data.service,
        model=bundle,
        decision=decision,
        champion=champion,
        promote=promote,
        metrics=metrics,
        logged=logged,
        extra={"baseline": baseline, "champion": champ, "selection": why, "window": window, "tiers": counts},
        window=window,
        input_example=_example(test.frame, bundle.features),
        make_artifacts=artifacts,
        datasets={"training": data.train.frame, "test": test.frame},
        report_sections=[
            (
                "Held-out test customers",
                pd.DataFrame(
                    {
                        f"{bundle.model.name} (candidate)": metrics,
                        "random ranking": baseline,
                        **({"champion": champ} if champ else {}),
                    }
                ),
            ),
            ("Candidates: 5-fold cross-validated Qini on train", cv_qini),
            ("Campaigns", window),
            gate_section(decision, champion),
            (
                "Uplift tiers",
                {
                    "min uplift (persuadable / do not disturb)": f"{bundle.min_uplift:.4f}",
                    "response threshold (sure thing)": f"{bundle.response_threshold:.4f}",
                    "test customers per tier": ", ".join(f"{k} {v}" for k, v in counts.items()),
                },
            ),
        ],
        extra_params={
            "model": bundle.model.name,
            "candidate_selection": why,
            "min_uplift": bundle.min_uplift,
            "response_threshold": bundle.response_threshold,
        },
    )


def _folds(data: UpliftData, most: int = 5) -> int:
    """As many folds as the rarest stratum allows (at least 2, at most `most`)."""
    return int(max(2, min(most, pd.Series(data.strata).value_counts().min())))

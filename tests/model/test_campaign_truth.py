"""Against the generator's known, heterogeneous treatment effect: (a) the 95 % interval covers the true
effect in at least 90 % of seeds; (b) the uplift model ranks true persuadables above random."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.synthetic.campaigns import TRUE_EFFECTS, simulate_outcomes, true_effect
from models.assignment import assign_arms
from models.experiments import arm_stats, compare_rates
from models.uplift import fit_uplift, qini_auc_score

PERSONAS = [*TRUE_EFFECTS, "other"]
ARMS = [("treatment", 0.5), ("control", 0.5)]


def _campaign(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"P{seed:04d}{i:08x}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "persona": rng.choice(PERSONAS, size=n, p=[0.25, 0.2, 0.2, 0.15, 0.1, 0.1]),
            "noise": rng.normal(size=n),
        }
    )
    frame["arm"] = assign_arms(ids, salt=f"s{seed}", campaign="truth", arms=ARMS)
    frame["y"] = simulate_outcomes(frame.arm, frame.persona, control="control", seed=seed)
    frame["tau"] = true_effect(frame.persona)[1]
    return frame


def test_interval_covers_the_true_effect_in_at_least_90_percent_of_seeds() -> None:
    covered = []
    for seed in range(200):
        f = _campaign(2000, seed)
        e = compare_rates(
            arm_stats("treatment", f.y[f.arm == "treatment"], binary=True),
            arm_stats("control", f.y[f.arm == "control"], binary=True),
        )
        covered.append(e.ci_low <= f.tau.mean() <= e.ci_high)
    assert np.mean(covered) >= 0.90
    assert np.mean(covered) <= 0.99  # and it is a 95 % interval, not a uselessly wide one


def test_uplift_model_ranks_true_persuadables_above_random() -> None:
    train, test = _campaign(20_000, 1), _campaign(10_000, 2)
    model = fit_uplift(
        train,
        treatment=(train.arm == "treatment").to_numpy(),
        outcome=train.y.to_numpy(),
        learner="two_model",
        base="logistic",
        numeric=["noise"],
        categorical=["persona"],
    )
    scores = model.predict(test)
    top = np.argsort(-scores)[: len(test) // 4]
    persuadable = test.tau.to_numpy() > 0
    assert persuadable[top].mean() > persuadable.mean() + 0.2
    # do-not-disturb customers (negative effect) land at the bottom
    assert test.tau.to_numpy()[np.argsort(scores)[: len(test) // 10]].mean() < 0
    t = (test.arm == "treatment").to_numpy()
    random_qini = np.mean(
        [qini_auc_score(test.y, np.random.default_rng(s).random(len(test)), t) for s in range(5)]
    )
    assert qini_auc_score(test.y, scores, t) > random_qini + 0.05


def test_uplift_tiers_name_the_true_groups() -> None:
    from models.uplift import fit_bundle

    train, test = _campaign(20_000, 3), _campaign(10_000, 4)
    bundle = fit_bundle(
        train,
        treatment=(train.arm == "treatment").to_numpy(),
        outcome=train.y.to_numpy(),
        learner="two_model",
        base="logistic",
        numeric=["noise"],
        categorical=["persona"],
        seed=0,
        outcome_name="conversion",
        campaigns=["truth"],
    )
    uplift, tiers = bundle.score(test)
    assert uplift.shape == tiers.shape == (len(test),)
    share = pd.crosstab(test.persona, tiers, normalize="index")
    assert share.loc["at_risk", "persuadable"] > 0.9  # +0.10: persuaded
    assert share.loc["complainer", "do_not_disturb"] > 0.9  # -0.06: put off
    assert share.loc["high_value_loyal", "sure_thing"] > 0.9  # 45 % buy anyway, no effect
    assert share.loc["dormant", "lost_cause"] > 0.9  # 2 %, no effect


def test_cross_validated_choice_ranks_above_random_on_held_out_customers() -> None:
    from training.uplift import UpliftData, choose_by_cross_validation

    train, test = _campaign(8_000, 5), _campaign(8_000, 6)
    data = UpliftData(
        train[["noise", "persona"]],
        treatment=(train.arm == "treatment").to_numpy(),
        outcome=train.y.to_numpy(),
        numeric=["noise"],
        categorical=["persona"],
    )
    logistic = [("s_learner", "logistic"), ("two_model", "logistic"), ("x_learner", "logistic")]
    best, cv_qini = choose_by_cross_validation(data, seed=0, candidates=logistic, folds=3)
    assert set(cv_qini) == {f"{a}_{b}" for a, b in logistic} and best in logistic
    assert cv_qini[f"{best[0]}_{best[1]}"] == max(cv_qini.values())
    model = fit_uplift(
        data.frame, treatment=data.treatment, outcome=data.outcome, learner=best[0], base=best[1],
        numeric=["noise"], categorical=["persona"],
    )  # fmt: skip
    t = (test.arm == "treatment").to_numpy()
    assert qini_auc_score(test.y, model.predict(test), t) > 0.05

"""Qini and AUUC on examples worked by hand (scikit-uplift 0.5.1's definitions), uplift tiers, and the
learners on data with a known heterogeneous effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from models.uplift import fit_uplift, qini_auc_score, qini_curve, uplift_auc_score, uplift_tiers

# Four customers: A treated responder, B control non-responder, C treated non-responder, D control
# responder. Scores rank them B, C, D, A (a poor model).
Y = [1, 0, 0, 1]
T = [1, 0, 1, 0]
SCORES = [0.1, 0.9, 0.5, 0.3]


def test_qini_curve_by_hand() -> None:
    # top-k: B (0 - 0), B+C (0 - 0 * 1/1), +D (0 - 1 * 1/2 = -0.5), +A (1 - 1 * 2/2 = 0)
    x, v = qini_curve(Y, SCORES, T)
    assert x.tolist() == [0, 1, 2, 3, 4]
    assert v.tolist() == [0, 0, 0, -0.5, 0]


def test_qini_auc_by_hand() -> None:
    # Model area = -0.5 (two triangles of -0.25); the random line ends at 0, so baseline area 0.
    # Perfect ranking (negative effect): A (+1), then B and C tied (0), then D (-1): curve 0,1,(3:1),0
    # -> area 0.5 + 2 + 0.5 = 3. Qini = -0.5 / 3.
    assert qini_auc_score(Y, SCORES, T) == pytest.approx(-1 / 6)
    # A perfect model scores 1.
    assert qini_auc_score(Y, [1, 0, 0, -1], T) == pytest.approx(1.0)


def test_auuc_by_hand() -> None:
    # Uplift curve (rate_t - rate_c) * k: 0, 0, (0/1 - 1/2) * 3 = -1.5, (1/2 - 1/2) * 4 = 0 -> area -1.5.
    # Perfect: 2 * (y == t) + t (control responders 1 is not > treated non-responders 1) ranks A, B, C, D:
    # 1, 2, 1.5, 0 -> area 0.5 + 1.5 + 1.75 + 0.75 = 4.5. AUUC = -1.5 / 4.5.
    assert uplift_auc_score(Y, SCORES, T) == pytest.approx(-1 / 3)


def test_ties_form_one_step() -> None:
    # Every score equal: the curve jumps from the origin to the end, i.e. the random line: Qini 0.
    assert qini_auc_score(Y, [0.2] * 4, T) == pytest.approx(0.0)


def test_metric_input_is_checked() -> None:
    with pytest.raises(ValidationFailed, match="treatment must be 0/1"):
        qini_auc_score(Y, SCORES, [1, 0, 2, 0])
    with pytest.raises(ValidationFailed, match="lengths differ"):
        qini_auc_score(Y, SCORES[:3], T)


def test_uplift_tiers() -> None:
    p_t = np.array([0.30, 0.10, 0.60, 0.02, 0.05])
    p_c = np.array([0.10, 0.30, 0.58, 0.03, 0.05])
    tiers = uplift_tiers(p_t, p_c, min_uplift=0.05, response_threshold=0.2)
    assert tiers.tolist() == ["persuadable", "do_not_disturb", "sure_thing", "lost_cause", "lost_cause"]


def _known_effect(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """x1 > 0: persuadable (+0.25), x1 <= 0 and x2 = 'b': put off (-0.1), else no effect."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.choice(["a", "b"], size=n), "x3": rng.normal(size=n)}
    )
    effect = np.where(frame.x1 > 0, 0.25, np.where(frame.x2 == "b", -0.1, 0.0))
    t = (rng.random(n) < 0.5).astype(int)
    base = 0.2 + 0.1 * (frame.x3 > 0)
    y = (rng.random(n) < base + effect * t).astype(int)
    return frame, t, y, effect


@pytest.mark.parametrize("learner", ["s_learner", "two_model", "x_learner"])
@pytest.mark.parametrize("base", ["logistic", "lightgbm"])
def test_learners_rank_true_persuadables_first(learner: str, base: str) -> None:
    frame, t, y, _ = _known_effect(6000, seed=1)
    test, t_test, y_test, effect = _known_effect(3000, seed=2)
    model = fit_uplift(
        frame, treatment=t, outcome=y, learner=learner, base=base, numeric=["x1", "x3"], categorical=["x2"]
    )
    scores = model.predict(test)
    top = np.argsort(-scores)[: len(scores) // 3]
    # The top third by predicted uplift holds mostly true persuadables (half the population is).
    assert (effect[top] > 0).mean() > 0.8
    assert qini_auc_score(y_test, scores, t_test) > qini_auc_score(
        y_test, np.random.default_rng(0).random(3000), t_test
    )

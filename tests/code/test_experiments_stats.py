"""The experiment statistics against values computed by hand or published (Newcombe 1998)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationFailed
from models.experiments import (
    arm_stats,
    compare_means,
    compare_rates,
    evaluate_outcome,
    minimum_detectable_effect,
    newcombe_interval,
    power_of,
    rate_sd,
    sample_ratio_mismatch,
    sample_size_per_arm,
    wilson_interval,
)


def _rate(arm: str, successes: int, n: int):
    return arm_stats(arm, [1] * successes + [0] * (n - successes), binary=True)


def test_wald_interval_and_pooled_z_test_by_hand() -> None:
    # 56/70 vs 48/80: diff 0.2, se = sqrt(.8*.2/70 + .6*.4/80) = 0.0727029, 1.959964 * se = 0.142495.
    e = compare_rates(_rate("t", 56, 70), _rate("c", 48, 80))
    assert e.method == "normal"
    assert e.difference == pytest.approx(0.2)
    assert (e.ci_low, e.ci_high) == pytest.approx((0.057505, 0.342495), abs=1e-6)
    # pooled p = 104/150; se0 = sqrt(p(1-p)(1/70+1/80)) = 0.0754666; z = 2.65020 -> two-sided p = 0.008045
    assert e.p_value == pytest.approx(0.008045, abs=2e-6)
    assert e.relative_lift == pytest.approx(0.2 / 0.6)
    assert e.significant


def test_newcombe_and_wilson_match_the_published_examples() -> None:
    # Newcombe (1998), Stat Med 17:873, table II method 10, examples (a) and (b).
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert newcombe_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    # Newcombe (1998), Stat Med 17:857, table I: Wilson score interval for 81/263 and 0/10.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)


def test_small_counts_switch_to_newcombe_and_fisher() -> None:
    e = compare_rates(_rate("t", 9, 10), _rate("c", 3, 10))
    assert e.method == "newcombe"
    assert (e.ci_low, e.ci_high) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    # Fisher's exact two-sided p for [[9, 1], [3, 7]]: (sum of tables as or less likely) = 0.019767.
    assert e.p_value == pytest.approx(0.019767, abs=1e-6)
    # The Wald interval is still reported beside it: symmetric around 0.6 (0.2605, 0.9395), where the
    # score interval is pulled towards the middle by the near-boundary 9/10.
    assert e.ci_normal == pytest.approx((0.260524, 0.939476), abs=1e-6)
    assert e.p_value_normal < e.p_value


def test_difference_of_means_by_hand_and_bootstrap_for_small_arms() -> None:
    # means 2.5 and 1, variances 5/3 and 1: se = sqrt(5/12 + 1/3) = 0.866025; 1.959964 * se = 1.697379
    e = compare_means([1, 2, 3, 4], [0, 1, 2], arm="t", control="c", bootstrap=False)
    assert e.difference == pytest.approx(1.5)
    assert (e.ci_low, e.ci_high) == pytest.approx((-0.197379, 3.197379), abs=1e-6)
    small = compare_means([1, 2, 3, 4], [0, 1, 2], arm="t", control="c", seed=3)
    assert small.method == "bootstrap"
    # A bootstrap difference of resampled means can only lie between the extreme possible differences.
    assert 1 - 2 <= small.ci_low < 1.5 < small.ci_high <= 4 - 0
    assert small == compare_means([1, 2, 3, 4], [0, 1, 2], arm="t", control="c", seed=3)  # seeded


def test_sample_ratio_mismatch_by_hand() -> None:
    # 5000 / 5200 at 50/50: expected 5100 each, chi2 = 2 * 100^2 / 5100 = 3.9216, p = 0.0477 -> fine.
    ok = sample_ratio_mismatch({"a": 5000, "b": 5200}, {"a": 0.5, "b": 0.5})
    assert ok.chi2 == pytest.approx(3.92157, abs=1e-5)
    assert ok.p_value == pytest.approx(0.04767, abs=1e-5)
    assert not ok.mismatch
    # 5000 / 5400: chi2 = 2 * 200^2 / 5200 = 15.385, p = 8.8e-5 < 0.001 -> mismatch.
    bad = sample_ratio_mismatch({"a": 5000, "b": 5400}, {"a": 0.5, "b": 0.5})
    assert bad.chi2 == pytest.approx(15.3846, abs=1e-4)
    assert bad.mismatch
    # Unequal shares are honoured: 2,000 / 8,000 at 20/80 fits exactly.
    assert sample_ratio_mismatch({"a": 2000, "b": 8000}, {"a": 0.2, "b": 0.8}).chi2 == 0
    with pytest.raises(ValidationFailed, match="no declared share"):
        sample_ratio_mismatch({"a": 1, "x": 2}, {"a": 0.5, "b": 0.5})


def test_power_and_minimum_detectable_effect_by_hand() -> None:
    sd = rate_sd(0.1)  # 0.3
    # (1.959964 + 0.841621) * 0.3 * sqrt(2 / 1000) = 0.0375872
    mde = minimum_detectable_effect(sd=sd, n_treatment=1000, n_control=1000)
    assert mde == pytest.approx(0.0375872, abs=1e-6)
    assert power_of(effect=mde, sd=sd, n_treatment=1000, n_control=1000) == pytest.approx(0.8, abs=1e-9)
    # (2.801585 * 0.3 / 0.05)^2 * 2 = 565.1 -> 566 per arm
    assert sample_size_per_arm(effect=0.05, sd=sd) == 566
    # More customers, smaller detectable effect; bigger effect, more power.
    assert minimum_detectable_effect(sd=sd, n_treatment=4000, n_control=4000) == pytest.approx(mde / 2)
    assert power_of(effect=0.06, sd=sd, n_treatment=1000, n_control=1000) > 0.8


def test_evaluate_outcome_reports_arms_effects_breakdowns_and_warnings() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    arm = np.where(rng.random(n) < 0.5, "treatment", "control")
    group = np.where(rng.random(n) < 0.5, "a", "b")
    base = np.where(group == "a", 0.1, 0.3)
    y = (rng.random(n) < base + np.where((arm == "treatment") & (group == "a"), 0.1, 0.0)).astype(int)
    frame = pd.DataFrame({"arm": arm, "group": group, "y": y, "tiny": ["x"] * 10 + ["y"] * (n - 10)})
    report = evaluate_outcome(
        frame,
        arm_column="arm",
        outcome="y",
        binary=True,
        control="control",
        shares={"treatment": 0.5, "control": 0.5},
        breakdown_by=["group", "tiny"],
        minimum_effect=0.005,
    )
    (effect,) = report["effects"]
    t = frame[frame.arm == "treatment"].y.mean()
    c = frame[frame.arm == "control"].y.mean()
    assert effect["difference"] == pytest.approx(t - c)
    by_group = {row["value"]: row["effects"][0] for row in report["breakdowns"]["group"]}
    assert by_group["a"]["ci_low"] > 0.03  # the effect lives in group a ...
    assert by_group["b"]["ci_low"] < 0 < by_group["b"]["ci_high"]  # ... and not in b
    assert [r["value"] for r in report["breakdowns"]["tiny"]] == ["y"]
    assert any("under-powered" in w for w in report["warnings"])
    assert any("tiny: 10 customers" in w for w in report["warnings"])
    assert not report["sample_ratio"]["mismatch"]
    assert math.isclose(sum(a["n"] for a in report["arms"]), n)


def test_evaluate_outcome_refuses_undeclared_arms() -> None:
    frame = pd.DataFrame({"arm": ["t", "c", "z"], "y": [1, 0, 1]})
    with pytest.raises(ValidationFailed, match=r"\['z'\]"):
        evaluate_outcome(
            frame, arm_column="arm", outcome="y", binary=True, control="c", shares={"t": 0.5, "c": 0.5}
        )

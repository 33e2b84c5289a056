"""The statistics of a randomised experiment (A/B test): pure functions, counts and arrays in, numbers out.

Per arm: n and the rate (0/1 outcome) or mean (money). Against control: the difference with a 95 %
interval and a two-sided p-value, the relative lift, the sample-ratio-mismatch check, and power / minimum
detectable effect before and during a campaign.

Which interval: the normal approximation (Wald, unpooled) while every arm has at least
`SMALL_COUNT` successes and failures (a rate) or `SMALL_N` rows (a mean). Below that the normal
interval undercovers, so the primary interval becomes Newcombe's hybrid score interval (method 10 of
Newcombe 1998, built from two Wilson intervals) with Fisher's exact p-value, or a seeded percentile
bootstrap for a mean. Both intervals are always returned, so a reader can see how far they differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from core.errors import ValidationFailed

ALPHA = 0.05
SMALL_COUNT = 10  # fewer successes or failures than this in an arm: exact-style interval for a rate
SMALL_N = 30  # fewer rows than this in an arm: bootstrap interval for a mean
SRM_P_VALUE = 0.001  # below this the arm sizes do not match the declared shares (the usual threshold)
BOOTSTRAP_DRAWS = 4000


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def _normal_p_value(z: float) -> float:
    from scipy.stats import norm

    return float(2 * norm.sf(abs(z)))


@dataclass(frozen=True)
class ArmStats:
    """One arm's outcome: `n` rows, `mean` (the rate for a 0/1 outcome), sample `variance`
    (ddof=1; p(1-p) for a rate) and `successes` for a 0/1 outcome (None for a mean)."""

    arm: str
    n: int
    mean: float
    variance: float
    successes: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Effect:
    """Treatment arm `arm` against `control`: difference of rates/means, its interval and p-value.

    `method` names the primary interval (`normal`, `newcombe` or `bootstrap`); `ci_normal` and `ci_exact`
    (Newcombe for a rate, bootstrap for a mean) are both kept. `relative_lift` = difference / control mean
    with a delta-method interval on the log of the ratio (None when the control mean is 0)."""

    arm: str
    control: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str
    ci_normal: tuple[float, float]
    ci_exact: tuple[float, float] | None
    p_value_normal: float
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    significant: bool

    def as_dict(self) -> dict:
        out = asdict(self)
        out["ci_normal"] = list(self.ci_normal)
        out["ci_exact"] = list(self.ci_exact) if self.ci_exact else None
        out["relative_ci"] = list(self.relative_ci) if self.relative_ci else None
        return out


def arm_stats(arm: str, values: Sequence[float] | np.ndarray, *, binary: bool) -> ArmStats:
    """Summarise one arm's outcomes; a 0/1 outcome must hold only 0 and 1."""
    y = np.asarray(values, dtype=float).ravel()
    if np.isnan(y).any():
        raise ValidationFailed(f"arm {arm!r}: the outcome has missing values")
    n = int(y.size)
    if binary:
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValidationFailed(f"arm {arm!r}: a conversion-style outcome must be 0/1")
        successes = int(y.sum())
        rate = successes / n if n else float("nan")
        return ArmStats(arm, n, rate, rate * (1 - rate) if n else float("nan"), successes)
    mean = float(y.mean()) if n else float("nan")
    variance = float(y.var(ddof=1)) if n > 1 else float("nan")
    return ArmStats(arm, n, mean, variance, None)


def wilson_interval(successes: int, n: int, *, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval of a proportion (good coverage down to a handful of events)."""
    if n <= 0:
        raise ValidationFailed("wilson_interval: n must be positive")
    if not 0 <= successes <= n:
        raise ValidationFailed(f"wilson_interval: successes {successes} outside 0..{n}")
    z = _z(1 - alpha / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    x_treatment: int, n_treatment: int, x_control: int, n_control: int, *, alpha: float = ALPHA
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p_treatment - p_control."""
    p1, p0 = x_treatment / n_treatment, x_control / n_control
    l1, u1 = wilson_interval(x_treatment, n_treatment, alpha=alpha)
    l0, u0 = wilson_interval(x_control, n_control, alpha=alpha)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return low, high


def _relative(
    diff: float, treated: ArmStats, control: ArmStats, alpha: float
) -> tuple[float | None, tuple[float, float] | None]:
    if control.mean == 0 or control.n == 0:
        return None, None
    lift = diff / control.mean
    if treated.mean <= 0 or treated.n < 2 or control.n < 2:
        return lift, None
    # Delta method on log(mean_t / mean_c): var = var_t / (n_t m_t^2) + var_c / (n_c m_c^2).
    var_log = treated.variance / (treated.n * treated.mean**2) + control.variance / (
        control.n * control.mean**2
    )
    half = _z(1 - alpha / 2) * math.sqrt(var_log)
    ratio = treated.mean / control.mean
    return lift, (ratio * math.exp(-half) - 1, ratio * math.exp(half) - 1)


def compare_rates(
    treated: ArmStats, control: ArmStats, *, alpha: float = ALPHA, small_count: int = SMALL_COUNT
) -> Effect:
    """Difference of two rates: Wald interval and z-test (pooled variance under H0) when the counts are
    large enough, else Newcombe's interval and Fisher's exact p-value."""
    if treated.successes is None or control.successes is None:
        raise ValidationFailed("compare_rates: both arms need a 0/1 outcome")
    if treated.n == 0 or control.n == 0:
        raise ValidationFailed(
            f"compare_rates: arm {(treated if treated.n == 0 else control).arm!r} has no customers"
        )
    x1, n1, x0, n0 = treated.successes, treated.n, control.successes, control.n
    p1, p0 = x1 / n1, x0 / n0
    diff = p1 - p0
    z = _z(1 - alpha / 2)
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    ci_normal = (diff - z * se, diff + z * se)
    pooled = (x1 + x0) / (n1 + n0)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    p_normal = _normal_p_value(diff / se0) if se0 > 0 else 1.0
    ci_exact = newcombe_interval(x1, n1, x0, n0, alpha=alpha)
    small = min(x1, n1 - x1, x0, n0 - x0) < small_count
    if small:
        from scipy.stats import fisher_exact

        p_value = float(fisher_exact([[x1, n1 - x1], [x0, n0 - x0]]).pvalue)
        low, high, method = ci_exact[0], ci_exact[1], "newcombe"
    else:
        p_value, (low, high), method = p_normal, ci_normal, "normal"
    lift, rel_ci = _relative(diff, treated, control, alpha)
    return Effect(
        arm=treated.arm,
        control=control.arm,
        difference=diff,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        method=method,
        ci_normal=ci_normal,
        ci_exact=ci_exact,
        p_value_normal=p_normal,
        relative_lift=lift,
        relative_ci=rel_ci,
        significant=p_value < alpha,
    )


def bootstrap_difference_interval(
    treated: np.ndarray,
    control: np.ndarray,
    *,
    alpha: float = ALPHA,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(treated) - mean(control), arms resampled separately."""
    rng = np.random.default_rng(seed)
    t = np.asarray(treated, dtype=float)
    c = np.asarray(control, dtype=float)
    # Resample in chunks so a large arm does not need a draws x n matrix at once.
    diffs = np.empty(draws)
    chunk = max(1, 2_000_000 // max(t.size, c.size, 1))
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        mt = t[rng.integers(0, t.size, size=(k, t.size))].mean(axis=1)
        mc = c[rng.integers(0, c.size, size=(k, c.size))].mean(axis=1)
        diffs[start : start + k] = mt - mc
    return float(np.quantile(diffs, alpha / 2)), float(np.quantile(diffs, 1 - alpha / 2))


def compare_means(
    treated_values: Sequence[float] | np.ndarray,
    control_values: Sequence[float] | np.ndarray,
    *,
    arm: str,
    control: str,
    alpha: float = ALPHA,
    small_n: int = SMALL_N,
    seed: int = 0,
    bootstrap: bool | None = None,
) -> Effect:
    """Difference of two means (e.g. spend): Welch's unpooled normal interval and p-value; a seeded
    percentile bootstrap becomes primary when an arm has fewer than `small_n` rows (or `bootstrap=True`)."""
    t = arm_stats(arm, treated_values, binary=False)
    c = arm_stats(control, control_values, binary=False)
    if t.n < 2 or c.n < 2:
        raise ValidationFailed(f"compare_means: arm {(t if t.n < 2 else c).arm!r} needs at least 2 customers")
    diff = t.mean - c.mean
    se = math.sqrt(t.variance / t.n + c.variance / c.n)
    z = _z(1 - alpha / 2)
    ci_normal = (diff - z * se, diff + z * se)
    p_normal = _normal_p_value(diff / se) if se > 0 else (1.0 if diff == 0 else 0.0)
    use_boot = bootstrap if bootstrap is not None else min(t.n, c.n) < small_n
    ci_exact = None
    method, (low, high), p_value = "normal", ci_normal, p_normal
    if use_boot:
        ci_exact = bootstrap_difference_interval(
            np.asarray(treated_values, dtype=float),
            np.asarray(control_values, dtype=float),
            alpha=alpha,
            seed=seed,
        )
        method, (low, high) = "bootstrap", ci_exact
        if min(t.n, c.n) < small_n:
            from scipy.stats import ttest_ind

            p_value = float(ttest_ind(treated_values, control_values, equal_var=False).pvalue)
    lift, rel_ci = _relative(diff, t, c, alpha)
    return Effect(
        arm=arm,
        control=control,
        difference=diff,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        method=method,
        ci_normal=ci_normal,
        ci_exact=ci_exact,
        p_value_normal=p_normal,
        relative_lift=lift,
        relative_ci=rel_ci,
        significant=p_value < alpha,
    )


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of the arm sizes to the declared shares; `mismatch` when the p-value
    is below `SRM_P_VALUE` (the assignment or the logging is broken: do not trust the effects)."""

    chi2: float
    dof: int
    p_value: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def sample_ratio_mismatch(
    counts: Mapping[str, int], shares: Mapping[str, float], *, threshold: float = SRM_P_VALUE
) -> SampleRatioCheck:
    """Are the observed arm sizes consistent with the declared shares?"""
    from scipy.stats import chi2 as chi2_dist

    arms = list(shares)
    missing = set(counts) - set(arms)
    if missing:
        raise ValidationFailed(f"sample ratio check: arm(s) {sorted(missing)} have no declared share")
    total_share = sum(shares.values())
    total = sum(int(counts.get(a, 0)) for a in arms)
    if total == 0:
        raise ValidationFailed("sample ratio check: no customers in any arm")
    expected = {a: total * shares[a] / total_share for a in arms}
    stat = sum((int(counts.get(a, 0)) - expected[a]) ** 2 / expected[a] for a in arms if expected[a] > 0)
    dof = len(arms) - 1
    p = float(chi2_dist.sf(stat, dof)) if dof > 0 else 1.0
    return SampleRatioCheck(
        chi2=float(stat),
        dof=dof,
        p_value=p,
        mismatch=p < threshold,
        observed={a: int(counts.get(a, 0)) for a in arms},
        expected=expected,
    )


def minimum_detectable_effect(
    *, sd: float, n_treatment: int, n_control: int, alpha: float = ALPHA, power: float = 0.8
) -> float:
    """Smallest absolute difference a two-sided test at `alpha` detects with probability `power`:
    (z_{1-alpha/2} + z_power) * sd * sqrt(1/n_t + 1/n_c). For a rate, sd = sqrt(p0 (1 - p0))."""
    if n_treatment <= 0 or n_control <= 0:
        raise ValidationFailed("minimum detectable effect: every arm needs at least one customer")
    return (_z(1 - alpha / 2) + _z(power)) * sd * math.sqrt(1 / n_treatment + 1 / n_control)


def power_of(*, effect: float, sd: float, n_treatment: int, n_control: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided test at `alpha` finds an absolute difference `effect`
    (the far tail is negligible and left out, as usual)."""
    from scipy.stats import norm

    if n_treatment <= 0 or n_control <= 0:
        return 0.0
    se = sd * math.sqrt(1 / n_treatment + 1 / n_control)
    if se == 0:
        return 1.0
    return float(norm.cdf(abs(effect) / se - _z(1 - alpha / 2)))


def sample_size_per_arm(
    *, effect: float, sd: float, alpha: float = ALPHA, power: float = 0.8, ratio: float = 1.0
) -> int:
    """Control-arm size needed to detect `effect` (treatment = ratio x control)."""
    if effect == 0:
        raise ValidationFailed("sample size: the effect to detect must not be 0")
    k = (_z(1 - alpha / 2) + _z(power)) * sd / abs(effect)
    return math.ceil(k * k * (1 + 1 / ratio))


def rate_sd(rate: float) -> float:
    """Standard deviation of a 0/1 outcome with this rate."""
    return math.sqrt(max(rate, 0.0) * (1 - min(rate, 1.0)))


def evaluate_outcome(
    frame,
    *,
    arm_column: str,
    outcome: str,
    binary: bool,
    control: str,
    shares: Mapping[str, float],
    breakdown_by: Sequence[str] = (),
    minimum_effect: float | None = None,
    power: float = 0.8,
    alpha: float = ALPHA,
    seed: int = 0,
    min_group: int = 50,
) -> dict:
    """One outcome of one experiment as data: per-arm stats, each treatment against control, the sample
    ratio check, power for `minimum_effect` (absolute), warnings, and the same effects within each value
    of every `breakdown_by` column (groups smaller than `min_group` rows are left out and counted)."""

    for col in (arm_column, outcome, *breakdown_by):
        if col not in frame.columns:
            raise ValidationFailed(f"experiment: column {col!r} is missing from the outcome table")
    if control not in shares:
        raise ValidationFailed(f"experiment: control arm {control!r} has no declared share")
    unknown = sorted(set(frame[arm_column].astype(str)) - set(shares))
    if unknown:
        raise ValidationFailed(f"experiment: arm(s) {unknown} in the data are not declared")

    def summarise(part: pd.DataFrame) -> tuple[list[ArmStats], list[Effect]]:
        groups = {
            str(k): g[outcome].to_numpy() for k, g in part.groupby(arm_column, sort=False, observed=True)
        }
        stats = [arm_stats(a, groups.get(a, np.empty(0)), binary=binary) for a in shares]
        by_arm = {s.arm: s for s in stats}
        effects = []
        for a in shares:
            if a == control or by_arm[a].n < 2 or by_arm[control].n < 2:
                continue
            if binary:
                effects.append(compare_rates(by_arm[a], by_arm[control], alpha=alpha))
            else:
                effects.append(
                    compare_means(groups[a], groups[control], arm=a, control=control, alpha=alpha, seed=seed)
                )
        return stats, effects

    stats, effects = summarise(frame)
    by_arm = {s.arm: s for s in stats}
    srm = sample_ratio_mismatch({s.arm: s.n for s in stats}, shares)
    warnings: list[str] = []
    if srm.mismatch:
        warnings.append(
            f"sample ratio mismatch: arm sizes {srm.observed} do not fit the declared shares "
            f"(chi-square p = {srm.p_value:.2g}); the effects below are not trustworthy"
        )
    sd = math.sqrt(by_arm[control].variance) if by_arm[control].n > 1 else float("nan")
    power_rows = []
    for e in effects:
        n_t, n_c = by_arm[e.arm].n, by_arm[control].n
        mde = minimum_detectable_effect(sd=sd, n_treatment=n_t, n_control=n_c, alpha=alpha, power=power)
        row = {"arm": e.arm, "mde": mde, "power": None}
        if minimum_effect is not None:
            row["power"] = power_of(effect=minimum_effect, sd=sd, n_treatment=n_t, n_control=n_c, alpha=alpha)
            if row["power"] < power:
                warnings.append(
                    f"under-powered: arm {e.arm!r} has power {row['power']:.2f} (< {power:.2f}) to detect "
                    f"{minimum_effect:g}; the smallest effect it can detect now is {mde:.4g}"
                )
        power_rows.append(row)
    breakdowns: dict[str, list[dict]] = {}
    for col in breakdown_by:
        rows, left_out = [], 0
        for value, part in frame.groupby(col, dropna=False, sort=True, observed=True):
            label = None if pd.isna(value) else str(value)
            if len(part) < min_group:
                left_out += len(part)
                continue
            s, eff = summarise(part)
            rows.append(
                {
                    "value": label,
                    "n": len(part),
                    "arms": [x.as_dict() for x in s],
                    "effects": [x.as_dict() for x in eff],
                }
            )
        breakdowns[col] = rows
        if left_out:
            warnings.append(f"breakdown by {col}: {left_out} customers in groups under {min_group} left out")
    return {
        "outcome": outcome,
        "kind": "rate" if binary else "mean",
        "control": control,
        "alpha": alpha,
        "arms": [s.as_dict() for s in stats],
        "effects": [e.as_dict() for e in effects],
        "sample_ratio": srm.as_dict(),
        "power": {"target": power, "minimum_effect": minimum_effect, "arms": power_rows},
        "warnings": warnings,
        "breakdowns": breakdowns,
    }

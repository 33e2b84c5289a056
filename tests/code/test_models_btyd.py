"""BG/NBD and Gamma-Gamma: likelihoods against hand-written formulas, recovery of known parameters from
simulated customers, and conditional expectations that match what the simulated customers then do."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ValidationFailed
from models.btyd import (
    BgNbd,
    GammaGamma,
    bgnbd_log_likelihood,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)

# Fader, Hardie & Lee (2005), CDNOW sample, weeks.
R, ALPHA, A, B = 0.243, 4.414, 0.793, 2.426


def _beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def test_bgnbd_likelihood_of_a_one_time_buyer_is_the_nbd_survivor():
    # x = 0: L = (alpha / (alpha + T))^r, whatever a and b
    ll = bgnbd_log_likelihood(R, ALPHA, A, B, x=[0], t_x=[0], T=[38.86])
    assert ll[0] == pytest.approx(R * math.log(ALPHA / (ALPHA + 38.86)), rel=1e-12)


def test_bgnbd_likelihood_of_a_repeat_buyer_matches_the_paper_formula():
    x, t_x, T = 2, 30.43, 38.86
    a1 = math.lgamma(R + x) - math.lgamma(R) + R * math.log(ALPHA)
    a2 = _beta(A, B + x) - _beta(A, B)
    a3 = (1 / (ALPHA + T)) ** (R + x)
    a4 = (A / (B + x - 1)) * (1 / (ALPHA + t_x)) ** (R + x)
    expected = a1 + a2 + math.log(a3 + a4)
    assert bgnbd_log_likelihood(R, ALPHA, A, B, x=[x], t_x=[t_x], T=[T])[0] == pytest.approx(
        expected, rel=1e-12
    )


def test_gamma_gamma_likelihood_and_expectation_by_hand():
    p, q, v, x, m = 6.25, 3.74, 15.44, 2.0, 30.0
    expected = (
        math.lgamma(p * x + q)
        - math.lgamma(p * x)
        - math.lgamma(q)
        + q * math.log(v)
        + (p * x - 1) * math.log(m)
        + p * x * math.log(x)
        - (p * x + q) * math.log(v + x * m)
    )
    assert gamma_gamma_log_likelihood(p, q, v, x=[x], m=[m])[0] == pytest.approx(expected, rel=1e-12)
    gg = GammaGamma(p, q, v)
    # 6.25 * (15.44 + 60) / (12.5 + 3.74 - 1) = 30.938...; a one-time buyer gets p v / (q - 1) = 35.22
    assert gg.expected_spend(x=[2, 0], m=[30.0, np.nan]) == pytest.approx([30.9383, 35.2190], abs=1e-4)


def test_p_alive_is_one_without_repeats_and_falls_with_silence():
    model = BgNbd(R, ALPHA, A, B)
    alive = model.p_alive(x=[0, 3, 3], t_x=[0, 30, 10], T=[38, 38, 38])
    assert alive[0] == 1.0
    assert alive[1] > alive[2]  # same purchases, longer silence since the last one


def _simulate(n: int, *, r: float, alpha: float, a: float, b: float, T: float, horizon: float, seed: int):
    """Customers from the BG/NBD story, all starting at 0: calibration history in (0, T], purchases in
    (T, T + horizon]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    future = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T + horizon:
                break
            if t <= T:
                x[i] += 1
                t_x[i] = t
            else:
                future[i] += 1
            if rng.random() < p[i]:  # dies after this purchase
                break
    return x, t_x, np.full(n, T), future


@pytest.fixture(scope="module")
def simulated():
    return _simulate(12_000, r=R, alpha=ALPHA, a=A, b=B, T=39.0, horizon=39.0, seed=3)


def test_fit_recovers_known_parameters(simulated):
    x, t_x, T, _ = simulated
    fit = fit_bgnbd(x=x, t_x=t_x, T=T)
    assert fit.r == pytest.approx(R, rel=0.15)
    assert fit.alpha == pytest.approx(ALPHA, rel=0.25)
    assert fit.a == pytest.approx(A, rel=0.3)
    assert fit.b == pytest.approx(B, rel=0.35)
    # the fitted optimum is at least as likely as the truth on the same data
    truth = bgnbd_log_likelihood(R, ALPHA, A, B, x=x, t_x=t_x, T=T).sum()
    assert fit.log_likelihood >= truth - 1e-6


def test_conditional_expectation_matches_simulated_future(simulated):
    x, t_x, T, future = simulated
    expected = BgNbd(R, ALPHA, A, B).expected_purchases(39.0, x=x, t_x=t_x, T=T)
    # law of total expectation: on average the conditional forecast is what happens
    assert expected.mean() == pytest.approx(future.mean(), rel=0.08)
    # and it ranks: the top predicted decile buys several times the average
    top = np.argsort(-expected)[: len(x) // 10]
    assert future[top].mean() > 3 * future.mean()
    assert np.all(BgNbd(R, ALPHA, A, B).expected_purchases(0.0, x=x[:50], t_x=t_x[:50], T=T[:50]) == 0)


def test_gamma_gamma_fit_recovers_known_parameters():
    rng = np.random.default_rng(5)
    p, q, v = 6.25, 3.74, 15.44
    n = 8000
    x = rng.integers(1, 8, n).astype(float)
    nu = rng.gamma(q, 1 / v, n)
    m = np.array([rng.gamma(p, 1 / nu[i], int(x[i])).mean() for i in range(n)])
    fit = fit_gamma_gamma(x=x, m=m)
    assert fit.p == pytest.approx(p, rel=0.15)
    assert fit.q == pytest.approx(q, rel=0.15)
    assert fit.v == pytest.approx(v, rel=0.25)


def test_inconsistent_history_is_refused_with_its_row():
    with pytest.raises(ValidationFailed, match="row 1"):
        fit_bgnbd(x=[1, 0], t_x=[2.0, 3.0], T=[5.0, 5.0])
    with pytest.raises(ValidationFailed, match="need 3"):
        fit_gamma_gamma(x=[0, 1], m=[0.0, 2.0])

"""The generator runs campaigns too: outcomes of assigned customers with a known, heterogeneous
treatment effect, so the evaluation and the uplift model can be checked against the truth.

Effects are additive on the probability of the outcome (an order within the window) and depend on the
customer's persona: some respond, some do not, a few react badly (do-not-disturb).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

# Persona -> (probability of an order in the window without treatment, true effect of the treatment).
TRUE_EFFECTS: dict[str, tuple[float, float]] = {
    "at_risk": (0.08, 0.10),  # persuadable: a win-back offer works
    "bargain_hunter": (0.15, 0.06),
    "high_value_loyal": (0.45, 0.0),  # sure things: they buy anyway
    "dormant": (0.02, 0.0),  # lost causes
    "complainer": (0.12, -0.06),  # do-not-disturb: contact puts them off
}
DEFAULT = (0.10, 0.02)
_OUTCOME_STREAM, _ORDER_STREAM = 0xC0, 0xC1


def true_effect(
    personas: pd.Series | np.ndarray, effects: Mapping[str, tuple[float, float]] = TRUE_EFFECTS
) -> tuple[np.ndarray, np.ndarray]:
    """(base probability, true effect) per customer from their persona."""
    p = pd.Series(personas).map(lambda x: effects.get(x, DEFAULT))
    return np.array([b for b, _ in p]), np.array([e for _, e in p])


def simulate_outcomes(
    arms: pd.Series | np.ndarray,
    personas: pd.Series | np.ndarray,
    *,
    control: str,
    seed: int,
    effects: Mapping[str, tuple[float, float]] = TRUE_EFFECTS,
) -> np.ndarray:
    """0/1 outcome per customer: an order in the window, with probability base + effect if treated."""
    base, effect = true_effect(personas, effects)
    treated = np.asarray(arms) != control
    # A stream of its own: a bare `default_rng(seed)` would repeat the draws that chose the personas.
    rng = np.random.default_rng([seed, _OUTCOME_STREAM])
    return (rng.random(base.size) < np.clip(base + effect * treated, 0, 1)).astype(int)


def simulate_orders(
    customer_ids: pd.Series | np.ndarray,
    outcome: np.ndarray,
    *,
    start: pd.Timestamp,
    window_days: int,
    seed: int,
    order_prefix: str = "CAMP",
) -> pd.DataFrame:
    """Clean-shaped orders (docs/CONTRACTS.md) for the customers whose outcome is 1, at random times
    inside the window."""
    rng = np.random.default_rng([seed, _ORDER_STREAM])
    ids = np.asarray(customer_ids, dtype=object)[np.asarray(outcome) == 1]
    offsets = pd.to_timedelta(rng.random(ids.size) * window_days * 86400, unit="s")
    return pd.DataFrame(
        {
            "order_id": [f"{order_prefix}{i:08d}" for i in range(ids.size)],
            "customer_id": ids,
            "order_ts": (start + offsets).astype("datetime64[us, UTC]"),
            "amount": np.round(rng.gamma(2.0, 30.0, ids.size), 2),
            "discount": 0.0,
            "quantity": 1,
            "category": "campaign",
            "is_returned": False,
            "is_cancelled": False,
        }
    )

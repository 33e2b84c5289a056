"""Assignment that cannot drift: a customer's arm is a pure function of (salt, campaign, customer id).

sha256 of `salt|campaign|customer_id`, its first 8 bytes read as a number in [0, 1), placed on the arms'
cumulative shares (in declared order). The same inputs give the same arm on any machine, in any order,
in any batch; adding customers later never moves anyone already assigned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

_SCALE = float(2**64)


def unit_hash(salt: str, campaign: str, customer_id: str) -> float:
    """A uniform number in [0, 1) from (salt, campaign, customer id)."""
    digest = hashlib.sha256(f"{salt}|{campaign}|{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_arms(
    customer_ids: Iterable[str], *, salt: str, campaign: str, arms: Sequence[tuple[str, float]]
) -> np.ndarray:
    """The arm of each customer; `arms` = [(name, share), ...] with shares summing to 1."""
    names = np.array([a for a, _ in arms], dtype=object)
    edges = np.cumsum([s for _, s in arms])
    edges[-1] = 1.0  # rounding of the shares' sum must not leave a gap at the top
    u = np.array([unit_hash(salt, campaign, str(c)) for c in customer_ids], dtype=float)
    return names[np.searchsorted(edges, u, side="right")] if u.size else np.empty(0, dtype=object)

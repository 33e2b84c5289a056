"""Feature drift: the population stability index (PSI) of a feature between a reference sample (the
training window) and a current one (the latest snapshot). Pure numpy.

PSI = sum over bins of (current share - reference share) * ln(current share / reference share), with
bins at the reference's quantiles (ties merged) plus one bin for missing values, so a feature that starts
arriving empty drifts too. Shares are floored at `EPSILON` so an empty bin does not give infinity.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-4


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `values` in each inner bin of `edges` (open at both ends) and, last, the share missing."""
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    out = np.append(counts, missing.sum()).astype(float)
    return out / max(len(values), 1)


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10) -> float:
    """PSI of `current` against `reference` (float arrays, NaN = missing). NaN if either is empty."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    if not len(reference) or not len(current):
        return float("nan")
    present = reference[~np.isnan(reference)]
    quantiles = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]) if len(present) else np.array([])
    edges = np.unique(quantiles)  # ties (e.g. many zeros) merge bins instead of leaving empty ones
    expected = np.maximum(_shares(reference, edges), EPSILON)
    actual = np.maximum(_shares(current, edges), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))

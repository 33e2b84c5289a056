"""Held-out metrics for binary scores (pure: arrays in, numbers out)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

try:
    from core.errors import ValidationFailed
except ImportError:  # a bundle loaded with only `models/` + libraries (how MLflow ships it)

    class ValidationFailed(ValueError):  # type: ignore[no-redef]
        """Bad model input; inside Persona this is `core.errors.ValidationFailed`."""


# Probabilities are clipped before the log loss so a single 0/1 prediction cannot make it infinite.
_EPS = 1e-15


def _as_binary(y_true, proba) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(proba, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValidationFailed(f"metrics: y_true has {y.size} values but proba has {p.size}")
    if y.size == 0:
        raise ValidationFailed("metrics: no rows to evaluate")
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(np.isnan(y) | ~np.isin(y, (0.0, 1.0)))[0])
        raise ValidationFailed(f"metrics: y_true must be 0/1; row {bad} holds {float(y[bad])!r}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        bad = int(np.flatnonzero(np.isnan(p) | (p < 0) | (p > 1))[0])
        raise ValidationFailed(f"metrics: proba must lie in [0, 1]; row {bad} holds {float(p[bad])!r}")
    if y.min() == y.max():
        raise ValidationFailed(
            f"metrics: y_true holds only class {int(y[0])} in {y.size} rows; "
            "ROC-AUC and PR-AUC need both classes"
        )
    return y, p


def top_decile_lift(y_true, proba) -> tuple[float, float]:
    """(lift, capture) of the top 10% of rows by score: lift = positive rate there / overall rate,
    capture = share of all positives found there. Ties at the cut are broken by row order after a stable
    sort, so the top decile always holds exactly ceil(n / 10) rows."""
    y, p = _as_binary(y_true, proba)
    n_top = int(np.ceil(0.1 * y.size))
    order = np.argsort(-p, kind="stable")[:n_top]
    top_positives = y[order].sum()
    lift = (top_positives / n_top) / y.mean()
    capture = top_positives / y.sum()
    return float(lift), float(capture)


def binary_metrics(y_true, proba) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier score, log loss, top-decile lift and capture,
    positive rate and row count of calibrated probabilities `proba` against 0/1 labels `y_true`."""

    y, p = _as_binary(y_true, proba)
    clipped = np.clip(p, _EPS, 1 - _EPS)
    lift, capture = top_decile_lift(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        "lift_top_decile": lift,
        "capture_top_decile": capture,
        "positive_rate": float(y.mean()),
        "n": float(y.size),
    }

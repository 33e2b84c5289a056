"""Customer lifetime value: each customer's spend over the next `horizon_days`, from point-in-time features.

Three models behind one interface (`features`, `predict(frame)`, `tiers`, `reasons`):

- `BtydValue`: BG/NBD x Gamma-Gamma (`models.btyd`) fed from the transaction features, the classic
  probabilistic baseline: expected purchases in the horizon times expected spend per purchase.
- `RateValue`: the naive rate baseline, historical spend per day since the first purchase times the
  horizon.
- `ClvRegressor`: LightGBM with a Tweedie objective (a point mass at zero plus a skewed positive tail,
  which is what next-year spend looks like: most customers spend nothing), boosted on top of the BG/NBD x
  Gamma-Gamma prediction as an offset (log link: the trees learn a multiplicative correction, so the
  model starts from the probabilistic answer rather than from a constant and stays sane where data is
  thin). The total is calibrated on validation (one factor so that predicted = actual spend there).

Value tiers (top 10% / next 20% / rest by default) are cut on the validation predictions.
`value_metrics` gives the held-out metrics: MAE, RMSE, predicted/actual total, top-decile revenue
capture and Spearman correlation among buyers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.btyd import BgNbd, GammaGamma, fit_bgnbd, fit_gamma_gamma
from models.classifier import (
    DEFAULT_TIER_SHARES,
    _check_columns,
    _encode_frame,
    _learn_categories,
    _numeric_array,
    _tier_cuts,
    encode_columns,
)
from models.single_row import picklable_state, single_row_of

try:
    from core.errors import ValidationFailed
except ImportError:  # a bundle loaded with only `models/` + libraries (how MLflow ships it)

    class ValidationFailed(ValueError):  # type: ignore[no-redef]
        """Bad model input; inside Persona this is `core.errors.ValidationFailed`."""


VALUE_TIERS: tuple[str, str, str] = ("top", "high", "standard")
# The transaction features the BG/NBD x Gamma-Gamma and the rate baseline read.
HISTORY_FEATURES: tuple[str, ...] = ("orders_lifetime", "recency_days", "tenure_days", "monetary_lifetime")
# feature name -> one numpy array per customer (serving's input: no DataFrame per request)
Columns = Mapping[str, np.ndarray]
# Floor of the rate baseline's denominator: a customer who first bought yesterday has no rate yet.
RATE_MIN_DAYS = 30.0

DEFAULT_CLV_PARAMS: dict[str, Any] = {
    "objective": "tweedie",
    "tweedie_variance_power": 1.5,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,  # as models.classifier: the same trees, without OpenMP spinning on busy cores
}
_CONTROL_KEYS = ("tier_shares", "num_boost_round", "early_stopping_rounds", "offset")


# ------------------------------------------------------------------------------------------ metrics
def value_metrics(actual: object, predicted: object) -> dict[str, float]:
    """Held-out metrics of predicted spend against actual spend (same rows):
    `mae`, `rmse`, `total_ratio` (sum predicted / sum actual), `capture_top_decile` (share of actual
    revenue held by the ceil(n/10) rows predicted highest; ties by row order), `spearman_buyers`
    (rank correlation among rows that actually spent), `buyer_rate`, `actual_mean`, `n`."""
    from scipy.stats import spearmanr

    y = np.asarray(actual, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValidationFailed(f"value metrics: {y.size} actual values but {p.size} predictions")
    if y.size == 0:
        raise ValidationFailed("value metrics: no rows to evaluate")
    for name, arr in (("actual", y), ("predicted", p)):
        if not np.isfinite(arr).all():
            raise ValidationFailed(
                f"value metrics: {name} holds a non-finite value in row {int(np.flatnonzero(~np.isfinite(arr))[0])}"
            )
    n_top = int(np.ceil(0.1 * y.size))
    top = np.argsort(-p, kind="stable")[:n_top]
    total = y.sum()
    buyers = y > 0
    spearman = float("nan")
    if buyers.sum() >= 3 and np.ptp(p[buyers]) > 0:
        spearman = float(spearmanr(p[buyers], y[buyers])[0])
    return {
        "mae": float(np.mean(np.abs(p - y))),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "total_ratio": float(p.sum() / total) if total > 0 else float("nan"),
        "capture_top_decile": float(y[top].sum() / total) if total > 0 else float("nan"),
        "spearman_buyers": spearman,
        "buyer_rate": float(buyers.mean()),
        "actual_mean": float(y.mean()),
        "n": float(y.size),
    }


# ------------------------------------------------------------------------------------------ history
@dataclass(frozen=True)
class History:
    """BG/NBD inputs in days, derived from the transaction features (see `history_from_features`)."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m: np.ndarray


def history_from_features(frame: pd.DataFrame) -> History:
    """Repeat purchases `x = orders_lifetime - 1`, age `T = tenure_days`, time to the last purchase
    `t_x = T - recency_days`, mean spend per purchase `m = monetary_lifetime / orders_lifetime`.

    Approximations, stated: tenure starts at the signup when that precedes the first order (then T is a
    little longer than BG/NBD's "since first purchase"), and `m` includes the first purchase (the
    Gamma-Gamma model's is over repeat purchases). Customers with no purchase yet get x = t_x = 0 and the
    population prior through T (0 when unknown)."""
    return history_from_columns(frame_columns(frame, list(HISTORY_FEATURES)))


def frame_columns(frame: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    """`names` of `frame` as numpy arrays: the frame entry points of the value models convert once and
    share the array code serving calls directly."""
    _check_columns(frame, names, where="value model input")
    return {name: frame[name].to_numpy() for name in dict.fromkeys(names)}


def _floats(columns: Columns, name: str) -> np.ndarray:
    if name not in columns:
        raise ValidationFailed(f"value model input: missing column(s) {[name]}")
    return _numeric_array(np.asarray(columns[name]), name)


def history_from_columns(columns: Columns) -> History:
    """`history_from_features` from feature name -> numpy array."""
    orders = _floats(columns, "orders_lifetime")
    tenure = _floats(columns, "tenure_days")
    recency = _floats(columns, "recency_days")
    monetary = _floats(columns, "monetary_lifetime")
    if len(orders) == 1:  # the one customer a CRM usually asks for: no numpy call per step
        return _history_of_one(float(orders[0]), float(tenure[0]), float(recency[0]), float(monetary[0]))
    orders = np.nan_to_num(orders, nan=0.0)
    tenure = np.nan_to_num(tenure, nan=0.0)
    monetary = np.nan_to_num(monetary, nan=0.0)
    x = np.maximum(orders - 1.0, 0.0)
    T = np.maximum(tenure, 0.0)
    t_x = np.where(x > 0, np.clip(T - np.nan_to_num(recency, nan=0.0), 0.0, T), 0.0)
    m = np.divide(monetary, orders, out=np.full_like(orders, np.nan), where=orders > 0)
    return History(x=x, t_x=t_x, T=T, m=m)


_BIGGEST = float(np.finfo(np.float64).max)


def _nan_to_zero(v: float) -> float:
    """`np.nan_to_num(v, nan=0.0)` of one float: NaN -> 0, +-inf -> the largest finite float."""
    if v != v:
        return 0.0
    if v in (math.inf, -math.inf):
        return math.copysign(_BIGGEST, v)
    return v


def _history_of_one(orders: float, tenure: float, recency: float, monetary: float) -> History:
    """`history_from_columns` of one row in Python floats: the same IEEE operations one by one as the
    array code (np.maximum, np.clip, np.divide; the sign of a zero included), 1-element arrays out
    (tests/model/test_one_row_paths.py holds the two to the same bits)."""
    orders, tenure, monetary = _nan_to_zero(orders), _nan_to_zero(tenure), _nan_to_zero(monetary)
    x = orders - 1.0
    x = x if x > 0.0 else 0.0  # np.maximum(x, 0.0): 0.0 unless x is above (x is never NaN here)
    T = tenure if tenure > 0.0 else 0.0
    t_x = 0.0
    if x > 0:  # np.clip(T - recency, 0.0, T): the lower bound, then the upper (both finite: never NaN)
        t_x = T - _nan_to_zero(recency)
        t_x = t_x if t_x >= 0.0 else 0.0
        t_x = t_x if t_x <= T else T
    m = monetary / orders if orders > 0 else math.nan
    return History(x=np.array([x]), t_x=np.array([t_x]), T=np.array([T]), m=np.array([m]))


# ------------------------------------------------------------------------------------- base bundle
@dataclass
class _ValueModel:
    """What every value model shares: features, horizon, tier cuts and metadata."""

    features: list[str]
    horizon_days: float
    tier_cuts: tuple[float, float] = (float("inf"), float("inf"))
    tier_names: tuple[str, ...] = VALUE_TIERS
    metadata: dict = field(default_factory=dict)

    def inputs(self) -> list[str]:
        """The columns `predict_columns` reads."""
        return list(self.features)

    def predict(self, frame: pd.DataFrame, horizon_days: float | None = None) -> np.ndarray:
        """Predicted spend over the horizon for each row of a DataFrame holding `inputs()`."""
        return self.predict_columns(frame_columns(frame, self.inputs()), horizon_days)

    def predict_columns(
        self, columns: Columns, horizon_days: float | None = None
    ) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def tiers(self, value: np.ndarray) -> np.ndarray:
        """Tier name per predicted value: >= tier_cuts[0] first, >= tier_cuts[1] second, else last."""
        v = np.asarray(value, dtype=np.float64)
        first, second, last = self.tier_names
        return np.where(v >= self.tier_cuts[0], first, np.where(v >= self.tier_cuts[1], second, last))

    def with_tiers(self, valid_value: np.ndarray, shares: tuple[float, float] = DEFAULT_TIER_SHARES) -> Any:
        """A copy whose tier cuts are the quantiles of `valid_value` (validation predictions)."""
        return replace(self, tier_cuts=_tier_cuts(np.asarray(valid_value, dtype=np.float64), tuple(shares)))

    def reasons(self, frame: pd.DataFrame, *, top_k: int = 3) -> list[list[dict]]:
        """Per row, what explains the value: [{"feature", "value", "contribution"}], at most `top_k`."""
        return self.reasons_columns(frame_columns(frame, self.reason_inputs()), top_k=top_k)

    def reason_inputs(self) -> list[str]:
        """The columns `reasons_columns` reads."""
        return list(HISTORY_FEATURES)

    def reasons_columns(self, columns: Columns, *, top_k: int = 3) -> list[list[dict]]:
        """The history behind each value (the probabilistic models have no per-feature attribution)."""
        h = history_from_columns(columns)
        monetary = _floats(columns, "monetary_lifetime")
        return [
            [
                {"feature": "orders_lifetime", "value": float(h.x[i] + (h.T[i] > 0)), "contribution": None},
                {"feature": "recency_days", "value": float(h.T[i] - h.t_x[i]), "contribution": None},
                {"feature": "monetary_lifetime", "value": _finite(monetary[i]), "contribution": None},
            ][:top_k]
            for i in range(len(h.x))
        ]


def _finite(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


# ---------------------------------------------------------------------------- BG/NBD x Gamma-Gamma
@dataclass
class BtydValue(_ValueModel):
    """BG/NBD x Gamma-Gamma: E[purchases in horizon] x E[spend per purchase]."""

    bgnbd: BgNbd | None = None
    gamma_gamma: GammaGamma | None = None

    def expected_purchases(self, frame: pd.DataFrame, horizon_days: float | None = None) -> np.ndarray:
        h = history_from_features(frame)
        t = self.horizon_days if horizon_days is None else horizon_days
        return self.bgnbd.expected_purchases(t, x=h.x, t_x=h.t_x, T=h.T)

    def p_alive(self, frame: pd.DataFrame) -> np.ndarray:
        h = history_from_features(frame)
        return self.bgnbd.p_alive(x=h.x, t_x=h.t_x, T=h.T)

    def inputs(self) -> list[str]:
        return list(HISTORY_FEATURES)

    def predict_columns(self, columns: Columns, horizon_days: float | None = None) -> np.ndarray:
        h = history_from_columns(columns)
        t = self.horizon_days if horizon_days is None else horizon_days
        spend = self.gamma_gamma.expected_spend(x=h.x, m=h.m)
        return self.bgnbd.expected_purchases(t, x=h.x, t_x=h.t_x, T=h.T) * spend


def fit_btyd_value(frame: pd.DataFrame, *, horizon_days: float) -> BtydValue:
    """Fit BG/NBD and Gamma-Gamma on the histories of the customers in `frame` (one snapshot: those
    who have bought before it), in days."""
    h = history_from_features(frame)
    bought = h.T > 0
    if not bought.any():
        raise ValidationFailed("value model: no customer in the calibration data has bought anything")
    bgnbd = fit_bgnbd(x=h.x[bought], t_x=h.t_x[bought], T=h.T[bought])
    gg = fit_gamma_gamma(x=h.x[bought], m=np.nan_to_num(h.m[bought], nan=0.0))
    return BtydValue(
        features=list(HISTORY_FEATURES),
        horizon_days=float(horizon_days),
        bgnbd=bgnbd,
        gamma_gamma=gg,
        metadata={"model": "bgnbd_gamma_gamma", **bgnbd.params(), **gg.params()},
    )


# ---------------------------------------------------------------------------------- rate baseline
@dataclass
class RateValue(_ValueModel):
    """Naive rate: lifetime spend / max(tenure, RATE_MIN_DAYS) x horizon."""

    def inputs(self) -> list[str]:
        return ["monetary_lifetime", "tenure_days"]

    def predict_columns(self, columns: Columns, horizon_days: float | None = None) -> np.ndarray:
        t = self.horizon_days if horizon_days is None else horizon_days
        spend = np.nan_to_num(_floats(columns, "monetary_lifetime"), nan=0.0)
        tenure = np.nan_to_num(_floats(columns, "tenure_days"), nan=0.0)
        return spend / np.maximum(tenure, RATE_MIN_DAYS) * t


def rate_value(*, horizon_days: float) -> RateValue:
    return RateValue(
        features=["monetary_lifetime", "tenure_days"],
        horizon_days=float(horizon_days),
        metadata={"model": "naive_rate"},
    )


# ----------------------------------------------------------------------------------------- LightGBM
@dataclass
class ClvRegressor(_ValueModel):
    """LightGBM (log link) on top of an optional BG/NBD x Gamma-Gamma offset, times a total factor."""

    booster: Any = field(default=None, repr=False)
    offset: BtydValue | None = None
    scale: float = 1.0

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        return _encode_frame(
            frame,
            features=self.features,
            categories=self.metadata.get("categories", {}),
            where="value model input",
        )

    def encode_columns(self, columns: Columns) -> np.ndarray:
        return encode_columns(
            columns,
            features=self.features,
            categories=self.metadata.get("categories", {}),
            where="value model input",
        )

    def inputs(self) -> list[str]:
        offset = self.offset.inputs() if self.offset is not None else []
        return list(dict.fromkeys([*self.features, *offset]))

    def base_margin(self, frame: pd.DataFrame, horizon_days: float | None = None) -> np.ndarray:
        """log of the offset model's prediction (0 without an offset)."""
        if self.offset is None:
            return np.zeros(len(frame))
        return self.base_margin_columns(frame_columns(frame, self.offset.inputs()), len(frame), horizon_days)

    def base_margin_columns(self, columns: Columns, n: int, horizon_days: float | None = None) -> np.ndarray:
        if self.offset is None:
            return np.zeros(n)
        t = self.horizon_days if horizon_days is None else horizon_days
        return _log_offset(self.offset.predict_columns(columns, t))

    def raw_and_contributions(
        self, frame: pd.DataFrame, horizon_days: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log of the predicted value and each feature's contribution to it (TreeSHAP, log scale)."""
        return self.raw_and_contributions_columns(frame_columns(frame, self.inputs()), horizon_days)

    def raw_and_contributions_columns(
        self, columns: Columns, horizon_days: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        x = self.encode_columns(columns)
        full = self._contributions(x)
        raw = full.sum(axis=1) + self.base_margin_columns(columns, len(x), horizon_days) + np.log(self.scale)
        return raw, full[:, :-1]

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions with the bias column; one row through LightGBM's single-row path."""
        if len(x) == 1:
            return single_row_of(self).contributions(x)
        return self.booster.predict(x, pred_contrib=True, num_threads=0 if len(x) >= 256 else 1)

    def __getstate__(self) -> dict[str, Any]:
        return picklable_state(self)

    def predict_columns(self, columns: Columns, horizon_days: float | None = None) -> np.ndarray:
        x = self.encode_columns(columns)
        if len(x) == 1:
            raw = single_row_of(self).raw(x)
        else:
            raw = self.booster.predict(x, raw_score=True, num_threads=0 if len(x) >= 256 else 1)
        return np.exp(raw + self.base_margin_columns(columns, len(x), horizon_days)) * self.scale

    def reason_inputs(self) -> list[str]:
        return self.inputs()

    def reasons_columns(self, columns: Columns, *, top_k: int = 3) -> list[list[dict]]:
        """Per row, the features that move the value most (contribution: log-value; +0.69 doubles it)."""
        # Only the contributions: the raw value (and the offset model under it) is not needed here.
        x = self.encode_columns(columns)
        contrib = self._contributions(x)[:, :-1]
        values = np.empty(contrib.shape, dtype=object)
        if len(contrib) == 1:  # one customer: its values as an object array holds them, no index per feature
            values[0, :] = [np.asarray(columns[name])[:1].tolist()[0] for name in self.features]
        else:
            for j, name in enumerate(self.features):
                values[:, j] = columns[name]
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :top_k]
        out = []
        for i in range(len(contrib)):
            out.append(
                [
                    {
                        "feature": self.features[j],
                        "value": _finite(values[i, j]) if not isinstance(values[i, j], str) else values[i, j],
                        "contribution": float(contrib[i, j]),
                    }
                    for j in order[i]
                ]
            )
        return out


def _log_offset(value: np.ndarray) -> np.ndarray:
    # A floor keeps log finite for customers the offset model gives ~0 (the trees can still lift them).
    return np.log(np.maximum(np.asarray(value, dtype=np.float64), 1e-2))


def _split_params(params: dict | None) -> tuple[dict, dict]:
    params = dict(params or {})
    control = {k: params.pop(k) for k in _CONTROL_KEYS if k in params}
    return {**DEFAULT_CLV_PARAMS, **params}, control


def _target(frame: pd.DataFrame, label: str, where: str) -> np.ndarray:
    _check_columns(frame, [label], where=where)
    y = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(y) | (y < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValidationFailed(
            f"{where}: label {label!r} must be a spend >= 0; row {i} holds {frame[label].iloc[i]!r}"
        )
    if y.sum() <= 0:
        raise ValidationFailed(f"{where}: nobody spent anything in the label window ({len(y)} rows)")
    return y


def fit_clv_regressor(
    *,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    horizon_days: float,
    offset: BtydValue | None = None,
    train_offset: BtydValue | None = None,
    categorical: list[str] | None = None,
    seed: int = 7,
    params: dict | None = None,
) -> ClvRegressor:
    """LightGBM value regression, early-stopped on `valid`; total calibrated and tiers cut on `valid`.

    `offset`: the BG/NBD x Gamma-Gamma model the trees correct (None: plain Tweedie regression).
    `train_offset`: the offset model for the training rows when it differs (fitted on the training
    snapshot's histories); defaults to `offset`."""

    if not features:
        raise ValidationFailed("value model: no features given")
    lgb_params, control = _split_params(params)
    lgb_params["seed"] = seed
    categorical = list(categorical or [])
    _check_columns(train, features, where="value training data")
    _check_columns(valid, features, where="value validation data")
    categories = _learn_categories(train, categorical)
    x_train = _encode_frame(train, features=features, categories=categories, where="value training data")
    x_valid = _encode_frame(valid, features=features, categories=categories, where="value validation data")
    y_train = _target(train, label, "value training data")
    y_valid = _target(valid, label, "value validation data")
    model = ClvRegressor(
        features=list(features),
        horizon_days=float(horizon_days),
        offset=offset,
        metadata={
            "model": "lightgbm_tweedie" + ("_on_bgnbd" if offset is not None else ""),
            "categories": categories,
        },
    )
    margin_train = (
        _log_offset((train_offset or offset).predict(train, horizon_days)) if offset is not None else None
    )
    margin_valid = model.base_margin(valid)
    cat_idx = [features.index(c) for c in categorical]
    dtrain = lgb.Dataset(
        x_train, y_train, init_score=margin_train, categorical_feature=cat_idx, free_raw_data=False
    )
    dvalid = lgb.Dataset(
        x_valid, y_valid, init_score=margin_valid, reference=dtrain, categorical_feature=cat_idx
    )
    booster = lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=int(control.get("num_boost_round", 2000)),
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(int(control.get("early_stopping_rounds", 100)), verbose=False)],
    )
    model.booster = booster
    model.metadata["best_iteration"] = int(booster.best_iteration or booster.current_iteration())
    model.metadata["feature_importance_gain"] = dict(
        zip(features, map(float, booster.feature_importance("gain")), strict=True)
    )
    predicted = model.predict(valid)
    model.scale = float(y_valid.sum() / predicted.sum()) if predicted.sum() > 0 else 1.0
    model.metadata["total_scale"] = model.scale
    shares = tuple(control.get("tier_shares", DEFAULT_TIER_SHARES))
    return model.with_tiers(predicted * model.scale, shares)

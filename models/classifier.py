"""Churn and conversion classifiers: LightGBM and a logistic-regression baseline behind one bundle.

Both models share the same preparation: numeric columns become floats, categorical columns become integer
codes over the category list seen in training (unknown or missing -> NaN), so serving can build the float
matrix once (`encode`) and score it on the fast path (`predict_proba_array`).

Calibration (on validation data): Platt scaling of the model's raw score by default. Why not isotonic:
class imbalance is handled by re-weighting positives (`scale_pos_weight` / `class_weight="balanced"`),
which mainly shifts and stretches the log-odds, exactly the distortion a sigmoid on the raw score undoes;
Platt keeps the ranking (ROC-AUC, lift, tiers and the sign of the reasons equal the booster's) and has two
parameters, so it is stable on validation sets with a few hundred positives, where isotonic regression
overfits and creates ties. `params={"calibration": "isotonic"}` switches to isotonic, stored as knots for
`numpy.interp`. Tier cuts are quantiles of the calibrated validation probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.single_row import picklable_state, single_row_of

try:
    from core.errors import ValidationFailed
except ImportError:  # a bundle loaded with only `models/` + libraries (how MLflow ships it)

    class ValidationFailed(ValueError):  # type: ignore[no-redef]
        """Bad model input; inside Persona this is `core.errors.ValidationFailed`."""


TIER_NAMES: dict[str, tuple[str, ...]] = {
    "churn": ("high", "medium", "low"),
    "conversion": ("hot", "warm", "cold"),
}
# Share of validation customers in the first and second tier (top 10% high/hot, next 20% medium/warm).
DEFAULT_TIER_SHARES: tuple[float, float] = (0.10, 0.20)

DEFAULT_LGB_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "min_data_per_group": 50,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
    # One training thread: the same trees as with more (deterministic, row-wise histograms), and on
    # a machine whose cores are busy LightGBM's OpenMP threads spin at every barrier: 150 rounds on
    # 90k rows took 208-284 s wall (42-48 CPU s) with both cores against 30-38 s (4-5 CPU s) with one
    # at load 13-16 on 2 cores. `training.params.num_threads` (0 = all cores) for a dedicated machine.
    "num_threads": 1,
}
# Keys of `params` that steer fitting rather than LightGBM itself.
_CONTROL_KEYS = ("calibration", "tier_shares", "num_boost_round", "early_stopping_rounds")
# A cap, not only early stopping: on more data early stopping kept ever more trees (358 at 20k generated
# customers, 1,664 at 100k) and batch scoring's TreeSHAP costs in proportion (5.9 CPU s per 1,000
# customers at 100k). Capped at 400 (100k): validation PR-AUC 0.9236 against 0.9246 [0.9218, 0.9271],
# test 0.9292 against 0.9300 [0.9274, 0.9328], 1.4 CPU s per 1,000. Data that stops early stays as it
# was (20k: 358 trees; the public data sets 50-158). A learning rate of 0.1 instead (270-387 trees at
# 100k) lost 0.002-0.009 of validation PR-AUC on Telco and X-Education. Figures: scripts/model_size.py.
# `training.params.num_boost_round` lifts the cap.
DEFAULT_NUM_BOOST_ROUND = 400
DEFAULT_EARLY_STOPPING = 100


# ---------------------------------------------------------------------------------------- encoding
def _numeric_column(col: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        row = bad.idxmax()
        raise ValidationFailed(
            f"feature {name!r} must be numeric: row {row!r} holds {col.loc[row]!r}",
            hint="declare the column as categorical, or clean it before scoring",
        )
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


# A category of its own for "not filled in", when training saw it: whether a customer left a field empty
# often says something (on the X-Education leads, an empty occupation converts far less often).
MISSING_CATEGORY = "(missing)"


def _category_codes(col: pd.Series, categories: list[str]) -> np.ndarray:
    missing = MISSING_CATEGORY if categories and categories[-1] == MISSING_CATEGORY else None
    as_text = col.astype(object).where(col.notna(), missing)
    as_text = as_text.map(lambda v: v if v is None else str(v))
    codes = pd.Categorical(as_text, categories=categories).codes.astype(np.float64)
    codes[codes < 0] = np.nan  # a category unseen in training (or missing, if training had no gaps)
    return codes


def _numeric_array(values: np.ndarray, name: str) -> np.ndarray:
    """`_numeric_column` for a numpy array: numeric arrays pass as they are, the rest is checked."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    return _numeric_column(pd.Series(values), name)


# Below this many rows a dict lookup per value beats building a pandas Categorical.
_LOOKUP_ROWS = 64


def _category_codes_array(values: np.ndarray, categories: list[str]) -> np.ndarray:
    """`_category_codes` for a numpy array (the same codes, NaN for unseen or missing)."""
    if len(values) > _LOOKUP_ROWS:
        return _category_codes(pd.Series(values, dtype=object), categories)
    missing = MISSING_CATEGORY if categories and categories[-1] == MISSING_CATEGORY else None
    lookup = {c: float(i) for i, c in enumerate(categories)}
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        gap = v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float | np.floating) and v != v)
        key = missing if gap else str(v)
        out[i] = lookup.get(key, np.nan) if key is not None else np.nan
    return out


def _learn_categories(frame: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    out = {}
    for c in categorical:
        known = sorted({str(v) for v in frame[c].dropna().unique()} - {MISSING_CATEGORY})
        out[c] = [*known, MISSING_CATEGORY] if frame[c].isna().any() else known
    return out


def _check_columns(frame: pd.DataFrame, columns: list[str], *, where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationFailed(f"{where}: missing column(s) {missing}")


def _encode_frame(
    frame: pd.DataFrame, *, features: list[str], categories: dict[str, list[str]], where: str
) -> np.ndarray:
    _check_columns(frame, features, where=where)
    out = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        if name in categories:
            out[:, j] = _category_codes(frame[name], categories[name])
        else:
            out[:, j] = _numeric_column(frame[name], name)
    return out


def encode_columns(
    columns: Mapping[str, np.ndarray], *, features: list[str], categories: dict[str, list[str]], where: str
) -> np.ndarray:
    """`_encode_frame` from feature name -> numpy array (the serving path; no DataFrame to build)."""
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValidationFailed(f"{where}: missing column(s) {missing}")
    n = len(columns[features[0]]) if features else 0
    if n == 1:  # one customer: one list of floats (float() casts as astype does), no slice per feature
        row = []
        for name in features:
            values = np.asarray(columns[name])
            if name in categories:
                row.append(_category_codes_array(values, categories[name])[0])
            elif values.dtype.kind in "fiub":
                row.append(float(values[0]))
            else:
                row.append(_numeric_array(values, name)[0])
        return np.array([row], dtype=np.float64)
    out = np.empty((n, len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        values = np.asarray(columns[name])
        if name in categories:
            out[:, j] = _category_codes_array(values, categories[name])
        else:
            out[:, j] = _numeric_array(values, name)
    return out


def _labels(frame: pd.DataFrame, label: str, *, where: str) -> np.ndarray:
    _check_columns(frame, [label], where=where)
    col = frame[label]
    if col.isna().any():
        raise ValidationFailed(f"{where}: label {label!r} is missing in row {col.isna().idxmax()!r}")
    y = col.to_numpy(dtype=np.float64) if pd.api.types.is_numeric_dtype(col) or col.dtype == bool else None
    if y is None or not np.isin(y, (0.0, 1.0)).all():
        raise ValidationFailed(
            f"{where}: label {label!r} must hold 0/1 (or booleans), found {col.unique()[:5]}"
        )
    if y.min() == y.max():
        raise ValidationFailed(
            f"{where}: label {label!r} has a single class ({int(y[0])}) in {len(y)} rows; "
            "the model needs positives and negatives"
        )
    return y


# ------------------------------------------------------------------------------------- calibration
@dataclass
class Calibrator:
    """Maps a raw model score (log-odds scale) to a calibrated probability, in numpy only."""

    method: str  # "platt" | "isotonic"
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: np.ndarray | None = None
    knots_y: np.ndarray | None = None

    def apply(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.slope * raw + self.intercept)))
        return np.interp(raw, self.knots_x, self.knots_y)


def fit_calibrator(raw: np.ndarray, y: np.ndarray, *, method: str) -> Calibrator:
    """Platt scaling (logistic regression of y on the raw score) or isotonic regression."""
    if method == "platt":
        # Practically unpenalised: two parameters fitted on thousands of rows need no shrinkage.
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
        return Calibrator("platt", slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator(
            "isotonic",
            knots_x=np.asarray(iso.X_thresholds_, dtype=np.float64),
            knots_y=np.asarray(iso.y_thresholds_, dtype=np.float64),
        )
    raise ValidationFailed(f"calibration must be 'platt' or 'isotonic', not {method!r}")


# -------------------------------------------------------------------------------------- estimators
# Rows from which LightGBM may use every core: below it, starting threads costs more than it saves (the
# serving hot path scores one customer at a time, and its workers already share the cores).
_THREADED_ROWS = 256


def _threads(x: np.ndarray) -> int:
    return 0 if len(x) >= _THREADED_ROWS else 1  # 0: LightGBM's default, all cores


@dataclass
class LightGBMEstimator:
    """A LightGBM booster; one thread for small inputs, all cores for large ones, and LightGBM's
    single-row path for one row (the one customer a CRM usually asks for: same numbers, no per-call
    set-up, see `models.single_row`)."""

    booster: Any

    def raw(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 1:
            return single_row_of(self).raw(x)
        return self.booster.predict(x, raw_score=True, num_threads=_threads(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw score (log-odds), without the bias column."""
        if len(x) == 1:
            return single_row_of(self).contributions(x)[:, :-1]
        return self.booster.predict(x, pred_contrib=True, num_threads=_threads(x))[:, :-1]

    def __getstate__(self) -> dict[str, Any]:
        return picklable_state(self)


@dataclass
class LinearEstimator:
    """Logistic regression over median-imputed, standardized numerics and one-hot categoricals,
    evaluated in numpy on the encoded matrix (categorical codes), so it shares the bundle's fast path."""

    numeric_idx: np.ndarray  # positions of numeric features in the encoded matrix
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    numeric_coef: np.ndarray
    categorical_idx: np.ndarray  # positions of categorical features
    categorical_coef: list[np.ndarray]  # one coefficient per known category, per categorical feature
    intercept: float

    def _standardized(self, x: np.ndarray) -> np.ndarray:
        num = x[:, self.numeric_idx]
        num = np.where(np.isnan(num), self.medians, num)
        return (num - self.means) / self.scales

    def _terms(self, x: np.ndarray) -> np.ndarray:
        terms = np.zeros_like(x)
        terms[:, self.numeric_idx] = self._standardized(x) * self.numeric_coef
        for j, coef in zip(self.categorical_idx, self.categorical_coef, strict=True):
            codes = x[:, j]
            known = ~np.isnan(codes)
            terms[known, j] = coef[codes[known].astype(np.int64)]
        return terms

    def design(self, x: np.ndarray) -> np.ndarray:
        """The matrix the regression is fitted on: standardized numerics, then one-hot blocks."""
        blocks = [self._standardized(x)]
        for j, coef in zip(self.categorical_idx, self.categorical_coef, strict=True):
            onehot = np.zeros((x.shape[0], len(coef)))
            codes = x[:, j]
            known = np.flatnonzero(~np.isnan(codes))
            onehot[known, codes[known].astype(np.int64)] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks)

    def raw(self, x: np.ndarray) -> np.ndarray:
        return self._terms(x).sum(axis=1) + self.intercept

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Coefficient x standardized value per numeric feature; for a categorical feature, the
        coefficient of the row's category (0 when unknown or missing)."""
        return self._terms(x)


# ------------------------------------------------------------------------------------------ bundle
@dataclass
class ClassifierBundle:
    """A fitted, calibrated classifier with its tier cuts; picklable with only `models` + libraries.

    `reasons` returns each row's top contributions to the *raw* score (log-odds), from LightGBM's
    `pred_contrib` or, for the baseline, coefficient x standardized value.
    """

    kind: str
    features: list[str]
    categorical: list[str]
    tier_names: tuple[str, ...]
    tier_cuts: tuple[float, ...]
    metadata: dict
    estimator: LightGBMEstimator | LinearEstimator = field(repr=False, default=None)  # type: ignore[assignment]
    calibrator: Calibrator = field(repr=False, default=None)  # type: ignore[assignment]

    # -- preparation
    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """DataFrame -> float matrix in `features` order, categoricals as codes (unknown -> NaN)."""
        return _encode_frame(
            X,
            features=self.features,
            categories=self.metadata["categories"],
            where=f"{self.kind} model input",
        )

    def encode_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """`encode` from feature name -> numpy array (the serving path; no DataFrame to build)."""
        return encode_columns(
            columns,
            features=self.features,
            categories=self.metadata["categories"],
            where=f"{self.kind} model input",
        )

    def _matrix(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValidationFailed(
                f"{self.kind} model expects {len(self.features)} feature columns {self.features}, "
                f"got an array of shape {np.shape(X)}"
            )
        return x

    # -- scoring
    def predict_proba_array(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(positive) from an encoded float matrix (the serving fast path)."""
        return self.calibrator.apply(self.estimator.raw(self._matrix(X)))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(positive) for each row of a DataFrame holding `features`."""
        return self.predict_proba_array(self.encode(X))

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        """The model's own probability before calibration (sigmoid of the raw score)."""
        return 1.0 / (1.0 + np.exp(-self.estimator.raw(self.encode(X))))

    def tiers(self, proba: np.ndarray) -> np.ndarray:
        """Tier name per probability: >= tier_cuts[0] -> first tier, >= tier_cuts[1] -> second, else last."""
        p = np.asarray(proba, dtype=np.float64)
        first, second, last = self.tier_names
        return np.where(p >= self.tier_cuts[0], first, np.where(p >= self.tier_cuts[1], second, last))

    def reasons(self, X: pd.DataFrame, *, top_k: int = 3) -> list[list[dict]]:
        """Per row, the `top_k` features with the largest |contribution| to the raw score (log-odds):
        [{"feature", "value" (the input value, None if missing), "contribution"}], largest first."""
        return self.reasons_encoded(self.encode(X), X[self.features].to_numpy(dtype=object), top_k=top_k)

    def reasons_encoded(self, x: np.ndarray, values: np.ndarray, *, top_k: int = 3) -> list[list[dict]]:
        """`reasons` from an already encoded matrix `x` and the raw input `values` (same rows, columns in
        `features` order): the serving path encodes once for both the probability and the reasons."""
        return self.reasons_from(self.estimator.contributions(self._matrix(x)), values, top_k=top_k)

    def predict_with_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated P(positive) and the per-feature contributions (for `reasons_from`). The probability
        comes from the raw score, exactly as `predict_proba_array` gives it: TreeSHAP's contributions add
        up to the raw score only to the last bits, and asking for reasons must not move a probability
        (a raw-score pass costs a fraction of the contributions)."""
        x = self._matrix(X)
        return self.calibrator.apply(self.estimator.raw(x)), self.estimator.contributions(x)

    def reasons_from(self, contrib: np.ndarray, values: np.ndarray, *, top_k: int = 3) -> list[list[dict]]:
        """`reasons` from contributions already computed (`predict_with_contributions`)."""
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :top_k]
        out: list[list[dict]] = []
        for i in range(len(contrib)):
            row = []
            for j in order[i]:
                value = values[i, j]
                if value is not None and not isinstance(value, str) and pd.isna(value):
                    value = None
                elif isinstance(value, np.generic):
                    value = value.item()
                row.append(
                    {"feature": self.features[j], "value": value, "contribution": float(contrib[i, j])}
                )
            out.append(row)
        return out


# ------------------------------------------------------------------------------------------ fitting
@dataclass
class _Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    categories: dict[str, list[str]]
    categorical: list[str]


def _prepare(
    *,
    kind: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    categorical: list[str] | None,
) -> _Prepared:
    if kind not in TIER_NAMES:
        raise ValidationFailed(f"model kind must be one of {sorted(TIER_NAMES)}, not {kind!r}")
    if not features:
        raise ValidationFailed(f"{kind} model: no features given")
    if len(set(features)) != len(features):
        raise ValidationFailed(f"{kind} model: duplicate feature names in {features}")
    if label in features:
        raise ValidationFailed(f"{kind} model: the label {label!r} is also listed as a feature")
    categorical = list(categorical or [])
    stray = [c for c in categorical if c not in features]
    if stray:
        raise ValidationFailed(f"{kind} model: categorical column(s) {stray} are not in features")
    _check_columns(train, features, where=f"{kind} training data")
    _check_columns(valid, features, where=f"{kind} validation data")
    categories = _learn_categories(train, categorical)
    return _Prepared(
        x_train=_encode_frame(train, features=features, categories=categories, where=f"{kind} training data"),
        y_train=_labels(train, label, where=f"{kind} training data"),
        x_valid=_encode_frame(
            valid, features=features, categories=categories, where=f"{kind} validation data"
        ),
        y_valid=_labels(valid, label, where=f"{kind} validation data"),
        categories=categories,
        categorical=categorical,
    )


def _tier_cuts(valid_proba: np.ndarray, shares: tuple[float, float]) -> tuple[float, float]:
    first, second = shares
    if not (first > 0 and second > 0 and first + second < 1):
        raise ValidationFailed(f"tier_shares must be two positive shares summing below 1, not {shares}")
    top = float(np.quantile(valid_proba, 1 - first))
    mid = float(np.quantile(valid_proba, 1 - first - second))
    return top, min(mid, top)


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _finish(
    *,
    kind: str,
    features: list[str],
    prep: _Prepared,
    estimator,
    calibration: str,
    tier_shares: tuple[float, float],
    metadata: dict,
) -> ClassifierBundle:
    raw_valid = estimator.raw(prep.x_valid)
    calibrator = fit_calibrator(raw_valid, prep.y_valid, method=calibration)
    proba_valid = calibrator.apply(raw_valid)
    metadata = {
        **metadata,
        "categories": prep.categories,
        "n_train": int(len(prep.y_train)),
        "n_valid": int(len(prep.y_valid)),
        "train_positive_rate": float(prep.y_train.mean()),
        "valid_positive_rate": float(prep.y_valid.mean()),
        "calibration": calibration,
        "tier_shares": list(tier_shares),
        "valid_brier_uncalibrated": _brier(prep.y_valid, 1.0 / (1.0 + np.exp(-raw_valid))),
        "valid_brier_calibrated": _brier(prep.y_valid, proba_valid),
    }
    return ClassifierBundle(
        kind=kind,
        features=list(features),
        categorical=prep.categorical,
        tier_names=TIER_NAMES[kind],
        tier_cuts=_tier_cuts(proba_valid, tier_shares),
        metadata=metadata,
        estimator=estimator,
        calibrator=calibrator,
    )


def _split_params(params: dict | None) -> tuple[dict, dict]:
    params = dict(params or {})
    control = {k: params.pop(k) for k in _CONTROL_KEYS if k in params}
    return params, control


def fit_classifier(
    *,
    kind: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    categorical: list[str] | None = None,
    params: dict | None = None,
    seed: int,
) -> ClassifierBundle:
    """Fit LightGBM on `train` (positives up-weighted by neg/pos unless `scale_pos_weight` is given;
    early stopping on `valid` ROC-AUC), calibrate on `valid` and cut tiers on `valid`.

    `params` overrides LightGBM parameters and may also hold `calibration` ("platt" | "isotonic"),
    `tier_shares` (default (0.10, 0.20)), `num_boost_round` and `early_stopping_rounds`.
    """

    lgb_overrides, control = _split_params(params)
    prep = _prepare(
        kind=kind, train=train, valid=valid, features=features, label=label, categorical=categorical
    )
    n_pos = float(prep.y_train.sum())
    lgb_params = {
        **DEFAULT_LGB_PARAMS,
        "scale_pos_weight": (len(prep.y_train) - n_pos) / n_pos,
        # Early stopping on ROC-AUC only: the log loss of an up-weighted model on unweighted validation
        # rows worsens from the first trees (its probabilities are inflated until calibration).
        "metric": "auc",
        "seed": seed,
        **lgb_overrides,
    }
    rounds = {
        "num_boost_round": int(control.get("num_boost_round", DEFAULT_NUM_BOOST_ROUND)),
        "early_stopping_rounds": int(control.get("early_stopping_rounds", DEFAULT_EARLY_STOPPING)),
    }
    cat_idx = [features.index(c) for c in prep.categorical]
    dtrain = lgb.Dataset(
        prep.x_train,
        label=prep.y_train,
        feature_name=list(features),
        categorical_feature=cat_idx,
        free_raw_data=True,
    )
    dvalid = lgb.Dataset(prep.x_valid, label=prep.y_valid, reference=dtrain)
    booster = lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=rounds["num_boost_round"],
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(rounds["early_stopping_rounds"], first_metric_only=True, verbose=False)
        ],
    )
    # Keep only the trees up to the best validation iteration, so every scoring path agrees.
    best = booster.best_iteration or booster.current_iteration()
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    importance = dict(zip(features, booster.feature_importance("gain").astype(float).tolist(), strict=True))
    return _finish(
        kind=kind,
        features=features,
        prep=prep,
        estimator=LightGBMEstimator(booster),
        calibration=str(control.get("calibration", "platt")),
        tier_shares=tuple(control.get("tier_shares", DEFAULT_TIER_SHARES)),
        metadata={
            "model": "lightgbm",
            # the round cap with LightGBM's own parameters: logged together (`model.*` on the run)
            "params": {**{k: v for k, v in lgb_params.items() if k != "metric"}, **rounds},
            "seed": seed,
            "best_iteration": int(best),
            "feature_importance_gain": importance,
        },
    )


def fit_baseline(
    *,
    kind: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    categorical: list[str] | None = None,
    seed: int,
    params: dict | None = None,
) -> ClassifierBundle:
    """Logistic regression (median imputation, standardization, one-hot; balanced class weights) on the
    same data, calibrated and tiered like `fit_classifier`. `params` may hold `C`, `calibration`,
    `tier_shares`."""

    options, control = _split_params(params)
    prep = _prepare(
        kind=kind, train=train, valid=valid, features=features, label=label, categorical=categorical
    )
    cat_set = set(prep.categorical)
    numeric_idx = np.array([j for j, f in enumerate(features) if f not in cat_set], dtype=np.int64)
    categorical_idx = np.array([features.index(c) for c in prep.categorical], dtype=np.int64)
    num = prep.x_train[:, numeric_idx]
    with np.errstate(all="ignore"):
        medians = np.nanmedian(num, axis=0) if num.size else np.zeros(0)
    medians = np.where(np.isnan(medians), 0.0, medians)  # a column that is all missing in training
    filled = np.where(np.isnan(num), medians, num)
    means = filled.mean(axis=0) if num.size else np.zeros(0)
    scales = filled.std(axis=0) if num.size else np.zeros(0)
    scales = np.where(scales > 0, scales, 1.0)
    sizes = [len(prep.categories[c]) for c in prep.categorical]
    shell = LinearEstimator(
        numeric_idx=numeric_idx,
        medians=medians,
        means=means,
        scales=scales,
        numeric_coef=np.zeros(len(numeric_idx)),
        categorical_idx=categorical_idx,
        categorical_coef=[np.zeros(s) for s in sizes],
        intercept=0.0,
    )
    C = float(options.get("C", 1.0))
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
    lr.fit(shell.design(prep.x_train), prep.y_train)
    coef = lr.coef_[0]
    shell.numeric_coef = coef[: len(numeric_idx)].copy()
    offsets = np.cumsum([len(numeric_idx), *sizes])
    shell.categorical_coef = [coef[offsets[i] : offsets[i + 1]].copy() for i in range(len(sizes))]
    shell.intercept = float(lr.intercept_[0])
    return _finish(
        kind=kind,
        features=features,
        prep=prep,
        estimator=shell,
        calibration=str(control.get("calibration", "platt")),
        tier_shares=tuple(control.get("tier_shares", DEFAULT_TIER_SHARES)),
        metadata={"model": "logistic", "params": {"C": C, "class_weight": "balanced"}, "seed": seed},
    )

"""Uplift modelling (pure): who changes their behaviour because of a treatment, and how to measure it.

Metrics follow scikit-uplift 0.5.1's definitions exactly (`qini_auc_score`, `uplift_auc_score`): the
area between the model's curve and the random line, divided by the same area for a perfect ranking.
They are re-implemented here because scikit-uplift calls a scikit-learn function that is gone in 1.10.

Learners (meta-learners over any binary classifier):
- S-learner: one classifier on covariates + the treatment flag; uplift = p(x, t=1) - p(x, t=0).
- two-model (T-learner): one classifier per arm; uplift = p_t(x) - p_c(x).
- X-learner (Kuenzel et al. 2019): imputed effects in each arm, regressed on x, mixed by the
  propensity (a constant in a randomised test).
Base classifiers: LightGBM (strongly regularised: uplift is a small difference of two large
probabilities, so noise in either swamps it) and a logistic regression on standardised covariates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

try:
    from core.errors import ValidationFailed
except ImportError:  # a bundle loaded with only `models/` + libraries (how MLflow ships it)

    class ValidationFailed(ValueError):  # type: ignore[no-redef]
        """Bad model input; inside Persona this is `core.errors.ValidationFailed`."""


LEARNERS = ("s_learner", "two_model", "x_learner")
BASES = ("lightgbm", "logistic")
UPLIFT_TIERS = ("persuadable", "sure_thing", "lost_cause", "do_not_disturb")


# ---------------------------------------------------------------------------------------------- metrics


def _check(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    u = np.asarray(uplift, dtype=float).ravel()
    t = np.asarray(treatment, dtype=float).ravel()
    if not (y.size == u.size == t.size):
        raise ValidationFailed(
            f"uplift metric: lengths differ (y {y.size}, uplift {u.size}, treatment {t.size})"
        )
    for name, a in (("y_true", y), ("treatment", t)):
        if not np.isin(a, (0.0, 1.0)).all():
            raise ValidationFailed(f"uplift metric: {name} must be 0/1")
    if np.isnan(u).any():
        raise ValidationFailed("uplift metric: uplift has missing values")
    return y, u, t


def _cumulative(y: np.ndarray, u: np.ndarray, t: np.ndarray):
    """Cumulative counts at each distinct score, best score first (ties form one step)."""
    order = np.argsort(u, kind="mergesort")[::-1]
    y, u, t = y[order], u[order], t[order]
    cut = np.r_[np.flatnonzero(np.diff(u)), u.size - 1]
    n_treated = np.cumsum(t)[cut]
    y_treated = np.cumsum(y * t)[cut]
    y_control = np.cumsum(y * (1 - t))[cut]
    n_all = cut + 1
    return n_all.astype(float), n_treated, n_all - n_treated, y_treated, y_control


def _start_at_origin(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size == 0 or v[0] != 0 or x[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, v]
    return x, v


def qini_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """(customers targeted, incremental responders): treated responders minus control responders
    scaled to the treated count, among the top-scored customers."""
    y, u, t = _check(y_true, uplift, treatment)
    n_all, n_t, n_c, y_t, y_c = _cumulative(y, u, t)
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
    return _start_at_origin(n_all, y_t - y_c * ratio)


def uplift_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """(customers targeted, (treated rate - control rate) x customers targeted)."""
    y, u, t = _check(y_true, uplift, treatment)
    n_all, n_t, n_c, y_t, y_c = _cumulative(y, u, t)
    rate_t = np.divide(y_t, n_t, out=np.zeros_like(y_t), where=n_t != 0)
    rate_c = np.divide(y_c, n_c, out=np.zeros_like(y_c), where=n_c != 0)
    return _start_at_origin(n_all, (rate_t - rate_c) * n_all)


def _area(x: np.ndarray, v: np.ndarray) -> float:
    return float(np.trapezoid(v, x))


def _normalised(x_actual, v_actual, x_perfect, v_perfect) -> float:
    baseline = _area(np.array([0.0, x_perfect[-1]]), np.array([0.0, v_perfect[-1]]))
    perfect = _area(x_perfect, v_perfect) - baseline
    return (_area(x_actual, v_actual) - baseline) / perfect


def qini_auc_score(y_true, uplift, treatment, *, negative_effect: bool = True) -> float:
    """Area between the Qini curve and the random line over the same area for the perfect ranking
    (with `negative_effect`, the perfect ranking puts treated responders first and control responders
    last: customers who respond only without treatment count against a model)."""
    y, u, t = _check(y_true, uplift, treatment)
    x, v = qini_curve(y, u, t)
    if negative_effect:
        xp, vp = qini_curve(y, y * t - y * (1 - t), t)
    else:
        gain = y[t == 1].sum() - (t == 1).sum() * y[t == 0].sum() / (t == 0).sum()
        xp, vp = np.array([0.0, gain, y.size]), np.array([0.0, gain, gain])
    return _normalised(x, v, xp, vp)


def uplift_auc_score(y_true, uplift, treatment) -> float:
    """AUUC normalised like scikit-uplift's `uplift_auc_score`."""
    y, u, t = _check(y_true, uplift, treatment)
    x, v = uplift_curve(y, u, t)
    control_responders = np.sum((y == 1) & (t == 0))
    treated_non_responders = np.sum((y == 0) & (t == 1))
    summand = y if control_responders > treated_non_responders else t
    xp, vp = uplift_curve(y, 2 * (y == t) + summand, t)
    return _normalised(x, v, xp, vp)


# ---------------------------------------------------------------------------------------------- learners


@dataclass
class Design:
    """How covariates become a numeric matrix: categories one-hot (levels fixed at fit), numbers as is
    (LightGBM) or standardised with missing -> mean (logistic)."""

    numeric: list[str]
    categorical: list[str]
    levels: dict[str, list[str]] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, *, numeric: Sequence[str], categorical: Sequence[str]) -> Design:
        d = cls(list(numeric), list(categorical))
        for c in d.categorical:
            d.levels[c] = sorted(frame[c].dropna().astype(str).unique().tolist())
        for c in d.numeric:
            x = pd.to_numeric(frame[c], errors="coerce").astype(float)
            d.means[c] = float(x.mean()) if x.notna().any() else 0.0
            d.scales[c] = float(x.std()) if x.std() and x.std() > 0 else 1.0
        return d

    def matrix(self, frame: pd.DataFrame, *, standardise: bool) -> np.ndarray:
        cols = []
        for c in self.numeric:
            x = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
            if standardise:
                x = (np.where(np.isnan(x), self.means[c], x) - self.means[c]) / self.scales[c]
            cols.append(x)
        for c in self.categorical:
            values = frame[c].astype(str).to_numpy()
            cols += [(values == level).astype(float) for level in self.levels[c]]
        return np.column_stack(cols) if cols else np.empty((len(frame), 0))


def _lightgbm_params(seed: int) -> dict:
    # Few, large leaves and slow learning: uplift lives in a small difference of probabilities.
    return {
        "n_estimators": 200,
        "learning_rate": 0.03,
        "num_leaves": 8,
        "min_child_samples": 200,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 5.0,
        "random_state": seed,
        "n_jobs": 1,
        "verbose": -1,
    }


def _classifier(base: str, seed: int):
    if base == "lightgbm":
        return lgb.LGBMClassifier(**_lightgbm_params(seed))
    if base == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=2000)
    raise ValidationFailed(f"uplift: unknown base learner {base!r} (one of {', '.join(BASES)})")


def _regressor(base: str, seed: int):
    if base == "lightgbm":
        return lgb.LGBMRegressor(**_lightgbm_params(seed))
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


@dataclass
class UpliftModel:
    """A fitted meta-learner. `predict(frame)` -> uplift per row (treated minus untreated probability);
    `predict_arms(frame)` -> (p_treated, p_control) where the learner estimates them (S, two-model)."""

    learner: str
    base: str
    design: Design
    seed: int = 0
    fitted: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.learner}_{self.base}"

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        return self.design.matrix(frame, standardise=self.base == "logistic")

    def fit(self, frame: pd.DataFrame, *, treatment: np.ndarray, outcome: np.ndarray) -> UpliftModel:
        x = self._x(frame)
        t = np.asarray(treatment, dtype=float)
        y = np.asarray(outcome, dtype=int)
        if len(np.unique(t)) != 2:
            raise ValidationFailed("uplift: training needs both treated and control customers")
        if self.learner == "s_learner":
            self.fitted["model"] = _classifier(self.base, self.seed).fit(self._with_t(x, t), y)
        elif self.learner in ("two_model", "x_learner"):
            self.fitted["treated"] = _classifier(self.base, self.seed).fit(x[t == 1], y[t == 1])
            self.fitted["control"] = _classifier(self.base, self.seed).fit(x[t == 0], y[t == 0])
            if self.learner == "x_learner":
                # Imputed individual effects: treated minus what control predicts, and vice versa.
                d_treated = y[t == 1] - self.fitted["control"].predict_proba(x[t == 1])[:, 1]
                d_control = self.fitted["treated"].predict_proba(x[t == 0])[:, 1] - y[t == 0]
                self.fitted["tau_treated"] = _regressor(self.base, self.seed).fit(x[t == 1], d_treated)
                self.fitted["tau_control"] = _regressor(self.base, self.seed).fit(x[t == 0], d_control)
                self.fitted["propensity"] = float(t.mean())  # randomised: the share treated
        else:
            raise ValidationFailed(f"uplift: unknown learner {self.learner!r} (one of {', '.join(LEARNERS)})")
        return self

    def _with_t(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        # The treatment flag and its products with every covariate, so a linear base can express
        # an effect that varies with x (a tree finds the interactions itself, the products do no harm).
        t = t.reshape(-1, 1)
        return np.hstack([x, t, x * t]) if self.base == "logistic" else np.hstack([x, t])

    def predict_arms(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = self._x(frame)
        if self.learner == "s_learner":
            m = self.fitted["model"]
            ones, zeros = np.ones(len(x)), np.zeros(len(x))
            return m.predict_proba(self._with_t(x, ones))[:, 1], m.predict_proba(self._with_t(x, zeros))[:, 1]
        return self.fitted["treated"].predict_proba(x)[:, 1], self.fitted["control"].predict_proba(x)[:, 1]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.learner == "x_learner":
            x = self._x(frame)
            g = self.fitted["propensity"]
            return g * self.fitted["tau_control"].predict(x) + (1 - g) * self.fitted["tau_treated"].predict(x)
        p_t, p_c = self.predict_arms(frame)
        return p_t - p_c


def fit_uplift(
    frame: pd.DataFrame,
    *,
    treatment: np.ndarray,
    outcome: np.ndarray,
    learner: str,
    base: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int = 0,
) -> UpliftModel:
    """Fit one meta-learner on covariates `numeric` + `categorical` of `frame`."""
    design = Design.fit(frame, numeric=numeric, categorical=categorical)
    return UpliftModel(learner, base, design, seed).fit(frame, treatment=treatment, outcome=outcome)


def uplift_tiers(
    p_treated: np.ndarray, p_control: np.ndarray, *, min_uplift: float, response_threshold: float
) -> np.ndarray:
    """The four classic uplift groups from the two predicted response probabilities: persuadable
    (uplift above `min_uplift`: responds because of the treatment), do_not_disturb (uplift below
    -`min_uplift`: the treatment puts them off), and among the rest sure_thing (responds anyway: control
    probability at least `response_threshold`) or lost_cause (responds either way too rarely).
    The two thresholds are fixed when the model is trained and stored with it."""
    p_t = np.asarray(p_treated, dtype=float)
    p_c = np.asarray(p_control, dtype=float)
    uplift = p_t - p_c
    return np.select(
        [uplift > min_uplift, uplift < -min_uplift, p_c >= response_threshold],
        ["persuadable", "do_not_disturb", "sure_thing"],
        default="lost_cause",
    )


@dataclass
class UpliftBundle:
    """What is registered and served: a fitted learner over the FeatureService's `features`, with the
    tier thresholds fixed at training time. `score(frame)` -> (uplift, tier) per row."""

    model: UpliftModel
    features: list[str]
    min_uplift: float
    response_threshold: float
    outcome: str
    campaigns: list[str]
    metadata: dict = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict(frame)

    def score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        uplift = self.model.predict(frame)
        _, p_c = self.model.predict_arms(frame)
        # The tier reads the learner's own uplift (the X-learner's differs from its arms' difference)
        # and the control arm's response probability.
        tiers = uplift_tiers(
            p_c + uplift, p_c, min_uplift=self.min_uplift, response_threshold=self.response_threshold
        )
        return uplift, tiers


def fit_bundle(
    frame: pd.DataFrame,
    *,
    treatment: np.ndarray,
    outcome: np.ndarray,
    learner: str,
    base: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int,
    outcome_name: str,
    campaigns: Sequence[str],
) -> UpliftBundle:
    """Fit one candidate and fix the tier thresholds from the same customers: an uplift counts when it
    exceeds a quarter of the average treatment effect (so the weakest responders are not called
    persuadable), and "responds anyway" means a control probability at least the control arm's rate."""
    t = np.asarray(treatment, dtype=int)
    y = np.asarray(outcome, dtype=int)
    model = fit_uplift(
        frame,
        treatment=t,
        outcome=y,
        learner=learner,
        base=base,
        numeric=numeric,
        categorical=categorical,
        seed=seed,
    )
    ate = y[t == 1].mean() - y[t == 0].mean()
    return UpliftBundle(
        model=model,
        features=[*numeric, *categorical],
        min_uplift=float(abs(ate) / 4),
        response_threshold=float(y[t == 0].mean()),
        outcome=outcome_name,
        campaigns=list(campaigns),
        metadata={"model": model.name, "ate_train": float(ate)},
    )

"""One row through a LightGBM booster without `Booster.predict`'s per-call set-up.

`Booster.predict` parses its parameters, builds a new C++ predictor and converts the input on every
call: about 0.1 ms for a raw score and more for TreeSHAP contributions, whatever the model does. The
serving path asks for one customer at a time, several models each, so that set-up was a large share of a
request. LightGBM's C API has a documented single-row path for this (`LGBM_BoosterPredictForMatSingleRow
FastInit` once, then `LGBM_BoosterPredictForMatSingleRowFast` per row): the same predictor code, its
configuration built once. Its results equal `Booster.predict`'s bit for bit
(tests/code/test_models_single_row.py holds them to that on thousands of rows).

The Python package exposes neither the C library nor the booster's handle publicly: `lightgbm.basic._LIB`
and `Booster._handle` are read here and nowhere else, and the equality test fails if an upgrade changes
them.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from lightgbm import basic as lgb_basic

_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE
_CONTRIB = 3  # C_API_PREDICT_CONTRIB
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class _FastConfig:
    """One FastConfig handle (a booster, a prediction type, the parameters), freed with this object."""

    def __init__(self, booster: Any, predict_type: int, n_features: int, width: int) -> None:
        self.booster = booster  # the handle must not outlive its booster
        self.width = width
        self._free = lgb_basic._LIB.LGBM_FastConfigFree  # held: module globals are gone at exit
        self.handle = ctypes.c_void_p()
        # As `Booster.predict` with its defaults: the best iteration when training kept one, else all.
        lgb_basic._safe_call(
            lgb_basic._LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),
                ctypes.c_int(booster.best_iteration),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self.handle),
            )
        )

    def __call__(self, row: np.ndarray) -> np.ndarray:
        # Fresh output and length per call: the service may score from several threads at once
        # (LightGBM locks its cached single-row predictor itself).
        out = np.empty(self.width, dtype=np.float64)
        length = ctypes.c_int64()
        lgb_basic._safe_call(
            lgb_basic._LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self.handle,
                row.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(length),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        return out

    def __del__(self) -> None:
        if self.handle:
            self._free(self.handle)
            self.handle = ctypes.c_void_p()


class SingleRow:
    """Raw score and TreeSHAP contributions of one row, as `Booster.predict(x, raw_score=True)` and
    `Booster.predict(x, pred_contrib=True)` give them for a one-row `x` (single-output models)."""

    def __init__(self, booster: Any) -> None:
        if booster.num_model_per_iteration() != 1:
            raise ValueError("single-row prediction here serves single-output models (binary, regression)")
        self.n_features = booster.num_feature()
        self._raw = _FastConfig(booster, _RAW_SCORE, self.n_features, 1)
        self._contrib = _FastConfig(booster, _CONTRIB, self.n_features, self.n_features + 1)

    def _row(self, x: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if row.shape[0] != self.n_features:
            raise ValueError(f"expected one row of {self.n_features} features, got shape {np.shape(x)}")
        return row

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Shape (1,): the raw score (log-odds for a binary model)."""
        return self._raw(self._row(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Shape (1, features + 1): per-feature contributions, then the bias column."""
        return self._contrib(self._row(x)).reshape(1, -1)


_ATTRIBUTE = "_single_row"  # where an owner (an estimator holding `booster`) keeps its predictor


def single_row_of(owner: Any) -> SingleRow:
    """`owner.booster`'s single-row predictor, built at its first use and kept on `owner`."""
    cached = owner.__dict__.get(_ATTRIBUTE)
    if cached is None:
        cached = owner.__dict__[_ATTRIBUTE] = SingleRow(owner.booster)
    return cached


def picklable_state(owner: Any) -> dict[str, Any]:
    """`owner.__dict__` without the predictor, for `__getstate__`: bundles are pickled (MLflow, copies),
    C handles cannot be."""
    state = dict(owner.__dict__)
    state.pop(_ATTRIBUTE, None)
    return state

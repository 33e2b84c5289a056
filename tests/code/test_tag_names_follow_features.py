"""The tag engine's fallback name list must never drift from the built feature tables (the one list)."""

from __future__ import annotations

from features.build import FEATURE_DTYPES
from models.tag_engine import CONTRACT_FEATURES, MODEL_OUTPUTS, STRING_INPUTS


def test_engine_fallback_names_equal_the_feature_tables() -> None:
    assert set(CONTRACT_FEATURES) == set(FEATURE_DTYPES)


def test_engine_string_inputs_equal_string_features_and_outputs() -> None:
    strings = {n for n, t in FEATURE_DTYPES.items() if t == "string"}
    strings |= {n for n, t in MODEL_OUTPUTS.items() if t == "string"}
    assert set(STRING_INPUTS) == strings

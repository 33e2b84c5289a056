"""The training splits are logged as MLflow datasets with MLflow's own digest and schema, computed a column
at a time instead of a Python call per cell: the record is the one `mlflow.data.from_pandas` makes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.mlflow_io import pandas_dataset


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 12_345  # more than the digest's first 10,000 rows
    floats = rng.normal(size=n)
    floats[7_000] = np.nan  # missing only after the first rows
    text = rng.choice(["a", "b", "c"], n).astype(object)
    text[11_000] = None
    mixed = rng.choice(["x", "y"], n).astype(object)
    mixed[12_000] = 3  # not every value is text
    return {
        "training split": pd.DataFrame(
            {
                "recency_days": floats,
                "frequency_365d": rng.integers(0, 9, n),
                "monetary_365d": rng.uniform(0, 1, n),
                "favourite_category": text,
                "channel": rng.choice(["web", "shop"], n).astype(object),
                "label": rng.integers(0, 2, n),
            }
        ),
        # a column MLflow cannot type: no schema at all, on both sides
        "text and a number in one column": pd.DataFrame({"mixed": mixed, "label": rng.integers(0, 2, n)}),
        "extension and time types": pd.DataFrame(
            {
                "visits": pd.array([1, None, 3, 4], dtype="Int64"),
                "flag": [True, False, True, True],
                "when": pd.to_datetime(["2025-01-01", None, "2025-01-03", "2025-01-04"], utc=True),
                "small": np.array([1, 2, 3, 4], dtype=np.int32),
                "label": [0, 1, 0, 1],
            }
        ),
        "no missing values": pd.DataFrame({"x": [0.5, 1.5], "label": [1, 0]}),
        "empty": pd.DataFrame({"x": pd.Series([], dtype="float64"), "label": pd.Series([], dtype="int64")}),
    }


@pytest.mark.parametrize("case", list(_frames()))
def test_dataset_record_is_mlflows_own(case: str) -> None:
    import mlflow

    frame = _frames()[case]
    ours = pandas_dataset(frame, source="file:///tmp/features", targets="label", name="churn_v1@window")
    theirs = mlflow.data.from_pandas(
        frame, source="file:///tmp/features", targets="label", name="churn_v1@window"
    )
    assert ours.digest == theirs.digest
    assert ours.schema == theirs.schema
    assert (ours.schema is None) == (case == "text and a number in one column")
    assert ours.to_dict() == theirs.to_dict()


def test_a_missing_value_after_the_first_rows_makes_the_column_optional() -> None:
    frame = _frames()["training split"]
    schema = {
        spec.name: spec for spec in pandas_dataset(frame, source="x", targets=None, name="n").schema.inputs
    }
    assert schema["recency_days"].required is False and schema["monetary_365d"].required is True
    assert schema["favourite_category"].required is False

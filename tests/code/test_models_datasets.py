"""training.datasets: mappings turn a raw file into features + label without dataset-specific code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import ConfigError, SourceError
from training.datasets import (
    DatasetMapping,
    SplitConfig,
    load_dataset,
    load_mapping,
    mapping_paths,
    shared_data_dir,
    snake_case,
    split_dataset,
)

CSV = """id;Age;Plan Type;Spend;Score A;Score B;outcome;after_call
a1;30;basic;10.5;1;2;yes;5
a2;41;Select;;3;4;no;6
a3;25;pro; ;5;6;no;7
a4;52;basic;99;7;8;yes;8
"""


def _mapping(**change) -> DatasetMapping:
    base = {
        "name": "tiny",
        "kind": "conversion",
        "path": "tiny.csv",
        "separator": ";",
        "label": "outcome",
        "positive": "yes",
        "id_column": "id",
        "drop": ["after_call", "Score*"],
        "numeric": ["Spend"],
        "missing_values": ["Select"],
    }
    return DatasetMapping(**{**base, **change})


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "tiny.csv").write_text(CSV, encoding="utf-8")
    return tmp_path


def test_mapping_applies_label_drops_markers_and_coercions(tiny):
    data = load_dataset(_mapping(), root=tiny)
    assert data.features == ["age", "plan_type", "spend"]
    assert data.categorical == ["plan_type"]
    assert data.frame["label"].tolist() == [1, 0, 0, 1]
    assert data.frame["age"].tolist() == [30, 41, 25, 52]
    assert pd.isna(data.frame.loc[1, "plan_type"])  # "Select" means missing
    assert data.frame["spend"].isna().tolist() == [False, True, True, False]  # blanks -> missing
    assert data.source_columns["plan_type"] == "Plan Type"


def test_errors_name_file_row_and_column(tiny):
    with pytest.raises(SourceError, match="column 'Spend2' named in mapping 'tiny' is not in the file"):
        load_dataset(_mapping(numeric=["Spend2"]), root=tiny)
    with pytest.raises(SourceError, match="'Nothing\\*' of mapping 'tiny' matches no column"):
        load_dataset(_mapping(drop=["Nothing*"]), root=tiny)
    with pytest.raises(SourceError, match="no row has 'outcome' == 'maybe'"):
        load_dataset(_mapping(positive="maybe"), root=tiny)
    with pytest.raises(SourceError, match="file not found"):
        load_dataset(_mapping(path="absent.csv"), root=tiny)
    (tiny / "tiny.csv").write_text(
        CSV.replace("a3;25;pro; ;5;6;no;7", "a3;25;pro; ;5;6;;7"), encoding="utf-8"
    )
    with pytest.raises(SourceError, match="row 3, column 'outcome': the label is empty"):
        load_dataset(_mapping(), root=tiny)


def test_splits_ordered_and_stratified():
    frame = pd.DataFrame({"x": range(100), "label": [1 if i % 4 == 0 else 0 for i in range(100)]})
    train, valid, test = split_dataset(
        frame, split=SplitConfig(method="ordered", train=0.6, valid=0.2), seed=1
    )
    assert train["x"].tolist() == list(range(60)) and test["x"].tolist() == list(range(80, 100))
    train, valid, test = split_dataset(frame, split=SplitConfig(train=0.6, valid=0.2), seed=1)
    assert (len(train), len(valid), len(test)) == (60, 20, 20)
    assert train["label"].sum() == 15 and valid["label"].sum() == 5 and test["label"].sum() == 5
    assert set(train["x"]) | set(valid["x"]) | set(test["x"]) == set(range(100))
    with pytest.raises(ValueError, match="train \\+ valid must be below 1"):
        SplitConfig(train=0.8, valid=0.2)


def test_shipped_mappings_are_valid_and_names_are_snake_case(tmp_path):
    names = {load_mapping(p).name for p in mapping_paths()}
    assert {"telco_churn", "bank_marketing", "bank_marketing_random", "x_education_leads"} <= names
    assert snake_case("Total Time Spent on Website") == "total_time_spent_on_website"
    assert snake_case("emp.var.rate") == "emp_var_rate"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: upsell\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid dataset mapping"):
        load_mapping(bad)


def test_shared_data_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONA_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("PERSONA_SHARED_DATA")
    assert shared_data_dir().parts[-2:] == ("shared", "data")

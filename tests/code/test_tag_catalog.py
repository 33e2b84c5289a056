"""Loading the tag catalog: every problem found up front, with tag key, field and column."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from artifacts.catalog import contract_names, read_catalog
from core.errors import CatalogError, ValidationFailed
from models.tag_engine import fit_cutpoints, read_cutpoints, write_cutpoints
from models.tag_engine import parse_catalog as _parse_catalog


def parse_catalog(raw, **names):
    """`models.tag_engine.parse_catalog` checked against the contract's names unless a test gives its own."""
    return _parse_catalog(raw, **{**contract_names(), **names})


REPO_CATALOG = Path(__file__).resolve().parents[2] / "configs" / "tags.yaml"


def _tag(**overrides):
    tag = {
        "key": "big_spender",
        "description": "spends a lot",
        "kind": "rule",
        "type": "flag",
        "expr": "monetary_365d > 1000",
        "cadence": "daily",
        "owner": "crm",
        "version": 1,
        "crm_field": "persona_big_spender",
    }
    tag.update(overrides)
    return {k: v for k, v in tag.items() if v is not None}


def _catalog(*tags, cutpoints=None):
    raw = {"version": "t1", "tags": list(tags)}
    if cutpoints:
        raw["cutpoints"] = cutpoints
    return raw


def _problems(raw, **kwargs) -> str:
    with pytest.raises(CatalogError) as err:
        parse_catalog(raw, **kwargs)
    return err.value.message


def test_the_repository_catalog_loads_and_has_the_built_in_floor():
    catalog = read_catalog(REPO_CATALOG)
    keys = set(catalog.keys)
    assert {
        "rfm_r",
        "rfm_f",
        "rfm_m",
        "rfm_segment",
        "lifecycle_stage",
        "high_value",
        "vip",
        "discount_sensitive",
        "frequent_returner",
        "complaint_risk",
        "channel_inactive",
        "model_segment",
        "persona_name",
        "churn_risk",
        "buying_intent",
    } <= keys
    assert len(set(catalog.crm_fields.values())) == len(catalog.tags)
    assert set(catalog.cutpoints) == {"recency", "frequency", "monetary"}
    # every input it reads is a contract feature or a model output
    assert set(catalog.required_inputs) <= contract_names()["known_names"]
    assert catalog.tag("rfm_segment").inputs == ("rfm_r", "rfm_f", "rfm_m")


def test_syntax_error_names_tag_and_column():
    msg = _problems(_catalog(_tag(expr="monetary_365d >> 3")))
    assert "tag 'big_spender' (entry 1): expr column 16: unexpected '>'" in msg


def test_unknown_name_is_reported_with_a_suggestion():
    msg = _problems(_catalog(_tag(expr="recency_dayz > 3")))
    assert "expr column 1: unknown name 'recency_dayz' (did you mean 'recency_days'?)" in msg


def test_names_are_checked_against_the_given_known_names():
    raw = _catalog(_tag(expr="monetary_365d > 1000 and visits_90d > 0"))
    parse_catalog(raw)  # contract names: fine
    msg = _problems(raw, known_names={"monetary_365d"})
    assert "column 26: unknown name 'visits_90d'" in msg


def test_type_error_in_expression_and_flag_that_is_not_boolean():
    msg = _problems(_catalog(_tag(expr="persona > 3")))
    assert "expr column 11: comparison '>': cannot mix a string and a number" in msg
    msg = _problems(_catalog(_tag(expr="monetary_365d * 2")))
    assert "a flag tag needs a condition (true/false), the expression gives a number" in msg


def test_duplicate_key_and_crm_field():
    msg = _problems(_catalog(_tag(), _tag()))
    assert "tag 'big_spender' (entry 2): duplicate key (first defined in entry 1)" in msg
    msg = _problems(_catalog(_tag(), _tag(key="other")))
    assert "crm_field 'persona_big_spender' is already used by tag 'big_spender'" in msg


def test_missing_fields_bad_value_type_kind_and_cadence_all_listed_at_once():
    msg = _problems(
        _catalog(
            _tag(owner=None, crm_field=None),
            _tag(key="b2", type="boolean", crm_field="f2"),
            _tag(key="b3", kind="magic", cadence="yearly", crm_field="f3"),
            _tag(key="b4", version=0, crm_field="f4", extra_field=1),
        )
    )
    assert "has 7 problem(s)" in msg
    for fragment in (
        "tag 'big_spender' (entry 1): missing field 'owner'",
        "tag 'big_spender' (entry 1): missing field 'crm_field'",
        "tag 'b2' (entry 2): type must be one of flag, tier, number, category, got 'boolean'",
        "tag 'b3' (entry 3): kind must be one of rule, model, segment, got 'magic'",
        "tag 'b3' (entry 3): cadence must be one of",
        "tag 'b4' (entry 4): unknown field 'extra_field'",
        "tag 'b4' (entry 4): version must be a positive integer, got 0",
    ):
        assert fragment in msg


def test_tags_may_read_earlier_tags_only():
    early = _tag(key="a", expr="monetary_365d > 10", crm_field="fa")
    late = _tag(key="b", expr="a and frequency_365d > 1", crm_field="fb")
    parse_catalog(_catalog(early, late))
    msg = _problems(_catalog(late, early))
    assert "tag 'b' (entry 1): refers to tag 'a' defined later" in msg


def test_tag_key_must_not_shadow_an_input_name():
    msg = _problems(_catalog(_tag(key="churn_tier", type="category", expr="persona")))
    assert "key clashes with the input name 'churn_tier'" in msg


def test_tier_needs_values_and_literal_results_must_be_among_them():
    msg = _problems(_catalog(_tag(type="tier", expr="churn_tier")))
    assert "a tier lists its ordered 'values'" in msg
    cases = [{"when": "recency_days > 90", "then": "gone"}]
    msg = _problems(
        _catalog(_tag(type="tier", values=["low", "high"], expr=None, cases=cases, **{"else": "low"}))
    )
    assert "value 'gone' is not one of ['low', 'high']" in msg


def test_cases_errors_point_at_the_case_and_column():
    cases = [{"when": "recency_days > 90", "then": "a"}, {"when": "recency_days >", "then": "b"}]
    msg = _problems(_catalog(_tag(type="category", expr=None, cases=cases)))
    assert "cases[2].when column 15: expression ends too early" in msg
    cases = [{"when": "region > 1", "then": "a"}]
    msg = _problems(_catalog(_tag(type="category", expr=None, cases=cases)))
    assert "cases[1].when column 10: comparison '>': cannot mix a string and a number" in msg


def test_segment_must_assign_every_customer():
    cases = [{"when": "recency_days > 90", "then": "a"}]
    msg = _problems(_catalog(_tag(kind="segment", type="category", expr=None, cases=cases)))
    assert "a segment assigns every customer" in msg


def test_expr_and_cases_are_exclusive_and_model_tags_name_their_model():
    msg = _problems(_catalog(_tag(cases=[{"when": "true", "then": "a"}])))
    assert "give exactly one of 'expr' or 'cases'" in msg
    msg = _problems(_catalog(_tag(kind="model", type="tier", values=["high"], expr="churn_tier")))
    assert "a model tag names its registered model" in msg


def test_qcut_needs_declared_cutpoints_on_the_same_feature():
    msg = _problems(_catalog(_tag(type="number", expr="qcut(recency_days, 'recency')")))
    assert "unknown cut points 'recency'" in msg
    cut = {"recency": {"feature": "recency_days", "bins": 5}}
    msg = _problems(_catalog(_tag(type="number", expr="qcut(tenure_days, 'recency')"), cutpoints=cut))
    assert "column 6: cut points 'recency' were fitted on 'recency_days'" in msg
    msg = _problems(_catalog(_tag(), cutpoints={"r": {"feature": "recency_days", "bins": 1}}))
    assert "cutpoints.r.bins: must be an integer from 2 to 100" in msg


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text("version: 1\ntags:\n  - key: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        read_catalog(path)
    assert str(path) in err.value.message and "line" in err.value.message


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="tag catalog not found"):
        read_catalog(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------ cutpoints
def _cut_catalog():
    return parse_catalog(
        _catalog(
            _tag(type="number", expr="qcut(monetary_365d, 'm')"),
            cutpoints={"m": {"feature": "monetary_365d", "bins": 4}},
        )
    )


def test_fit_cutpoints_uses_the_latest_snapshot_only_and_rank_edges():
    old = pd.Timestamp("2025-01-01", tz="UTC")
    new = pd.Timestamp("2025-02-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "event_timestamp": [old] * 3 + [new] * 9,
            "monetary_365d": [1000.0, 2000.0, 3000.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, None],
        }
    )
    payload = fit_cutpoints(_cut_catalog(), frame)
    # 8 non-null values 0..70 at the latest snapshot: quarters of 2, cut half-way between distinct values
    assert payload["cutpoints"]["m"]["edges"] == [15.0, 35.0, 55.0]
    assert payload["cutpoints"]["m"]["rows"] == 8
    assert payload["snapshot"] == new.isoformat() and payload["catalog_version"] == "t1"


def test_cutpoints_round_trip_through_file_and_are_applied(tmp_path):
    catalog = _cut_catalog()
    values = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    payload = fit_cutpoints(catalog, pd.DataFrame({"monetary_365d": values}))
    path = write_cutpoints(tmp_path / "tags" / "cutpoints.json", payload)
    loaded = read_cutpoints(path)
    assert loaded == json.loads(json.dumps(payload))
    out = catalog.evaluate(pd.DataFrame({"monetary_365d": [5.0, 15.0, 50.0, 70.0]}), loaded)
    assert out["big_spender"].tolist() == [1.0, 2.0, 3.0, 4.0]  # edges 15, 35, 55


def test_missing_or_mismatched_cutpoints_are_a_catalog_error(tmp_path):
    catalog = _cut_catalog()
    frame = pd.DataFrame({"monetary_365d": [1.0]})
    with pytest.raises(CatalogError, match="cut points 'm' are not fitted"):
        catalog.evaluate(frame, {"cutpoints": {}})
    wrong = {"cutpoints": {"m": {"feature": "recency_days", "bins": 4, "edges": [1, 2, 3]}}}
    with pytest.raises(CatalogError, match="fitted for 'recency_days'"):
        catalog.evaluate(frame, wrong)
    with pytest.raises(CatalogError, match="no fitted cut points"):
        read_cutpoints(tmp_path / "missing.json")


def test_fit_cutpoints_without_values_names_the_feature():
    with pytest.raises(CatalogError, match="no values of 'monetary_365d'"):
        fit_cutpoints(_cut_catalog(), pd.DataFrame({"monetary_365d": [None, None]}))


def test_evaluate_names_missing_input_columns():
    catalog = parse_catalog(_catalog(_tag()))
    with pytest.raises(
        ValidationFailed, match="lacks column\\(s\\) monetary_365d needed by tags big_spender"
    ):
        catalog.evaluate(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValidationFailed, match="lack monetary_365d"):
        catalog.evaluate_one({"x": 1})


def test_non_numeric_input_is_reported_with_its_row():
    catalog = parse_catalog(_catalog(_tag()))
    with pytest.raises(
        ValidationFailed, match="'monetary_365d' must be numeric; customer P2 \\(row 2\\) holds 'lots'"
    ):
        catalog.evaluate(pd.DataFrame({"customer_id": ["P1", "P2"], "monetary_365d": [5.0, "lots"]}))


def test_catalog_file_is_not_modified_by_loading(tmp_path):
    raw = yaml.safe_load(REPO_CATALOG.read_text(encoding="utf-8"))
    before = copy.deepcopy(raw)
    parse_catalog(raw)
    assert raw == before

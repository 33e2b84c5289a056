"""Property: the batch engine and the single-customer engine give identical tags on any input,
including NaN, None, infinities and values sitting exactly on cut points."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts.catalog import contract_names, read_catalog
from models.tag_engine import format_one, format_values
from models.tag_engine import parse_catalog as _parse_catalog


def parse_catalog(raw, **names):
    """`models.tag_engine.parse_catalog` checked against the contract's names unless a test gives its own."""
    return _parse_catalog(raw, **{**contract_names(), **names})


REPO_CATALOG = read_catalog(Path(__file__).resolve().parents[2] / "configs" / "tags.yaml")


def _t(key, type_, expr=None, **extra):
    tag = {
        "key": key,
        "description": key,
        "kind": "rule",
        "type": type_,
        "cadence": "daily",
        "owner": "t",
        "version": 1,
        "crm_field": f"f_{key}",
    }
    if expr is not None:
        tag["expr"] = expr
    tag.update(extra)
    return tag


# Every construct of the language, over numbers, strings and earlier tags.
EVERY_CONSTRUCT = parse_catalog(
    {
        "version": "p1",
        "cutpoints": {"r": {"feature": "recency_days", "bins": 4}},
        "tags": [
            _t(
                "arith",
                "number",
                "(monetary_365d - frequency_365d * 2) / (tenure_days + 1) + -recency_days",
                decimals=3,
            ),
            _t("ratio", "number", "monetary_365d / frequency_365d"),
            _t("score", "number", "5 - qcut(recency_days, 'r')"),
            _t("cmp", "flag", "recency_days < 30 or monetary_365d >= 100 and not (frequency_365d != 2)"),
            _t("btw", "flag", "tenure_days between 10 and 100 or tenure_days not between -5 and 1e3"),
            _t("inn", "flag", "frequency_365d in (0, 1, 2) or persona not in ('a', 'b')"),
            _t("nul", "flag", "recency_days is null or persona is not null"),
            _t("strs", "flag", "persona = region or churn_tier != 'high'"),
            _t("co", "number", "coalesce(recency_days, tenure_days, -1)"),
            _t("cos", "category", "coalesce(persona, region, 'none')"),
            _t(
                "cas",
                "category",
                "case when score >= 3 then 'top' when score is null then null "
                "when arith > 0 then persona else 'rest' end",
            ),
            _t(
                "seg",
                "category",
                cases=[{"when": "cmp and btw", "then": "both"}, {"when": "cmp", "then": "one"}],
                **{"else": "none"},
            ),
            _t("casn", "number", "case when nul then score * 2 when seg = 'one' then co end"),
            _t("flagref", "flag", "cmp = btw and inn"),
        ],
    }
)

numbers = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.sampled_from([0.0, 1.0, 2.0, 10.0, 30.0, 100.0, -1.0, float("inf"), -float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-1000, max_value=1000),
)
strings = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "high", "medium", "low", ""]))
edges = st.lists(
    st.one_of(st.sampled_from([0.0, 1.0, 10.0, 30.0]), st.floats(-1e6, 1e6, allow_nan=False)),
    min_size=3,
    max_size=3,
).map(sorted)


def _row(draw_numbers, draw_strings, names_num, names_str):
    return st.fixed_dictionaries(
        {**{n: draw_numbers for n in names_num}, **{n: draw_strings for n in names_str}}
    )


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def _check(catalog, rows, cutpoints):
    frame = pd.DataFrame(rows, columns=list(rows[0]))
    batch = catalog.evaluate(frame, cutpoints)
    shown = format_values(batch, catalog)
    for i, row in enumerate(rows):
        one = catalog.evaluate_one(row, cutpoints)
        one_shown = format_one(one, catalog)
        for tag in catalog.tags:
            b = batch[tag.key].iloc[i]
            b = bool(b) if tag.value_type == "flag" else (float(b) if tag.value_type == "number" else b)
            assert _same(one[tag.key], b), (tag.key, row, one[tag.key], b)
            assert shown[tag.key].iloc[i] == one_shown[tag.key], tag.key


NUM_INPUTS = ["recency_days", "monetary_365d", "frequency_365d", "tenure_days"]
STR_INPUTS = ["persona", "region", "churn_tier"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row(numbers, strings, NUM_INPUTS, STR_INPUTS), min_size=1, max_size=12), cut=edges)
def test_every_construct_batch_equals_single(rows, cut):
    cutpoints = {"cutpoints": {"r": {"feature": "recency_days", "bins": 4, "edges": cut}}}
    _check(EVERY_CONSTRUCT, rows, cutpoints)


REPO_STR = (
    "persona",
    "churn_tier",
    "conversion_tier",
    "clv_tier",
    "churn_reasons",
    "conversion_reasons",
    "next_best",
    "next_best_list",
    "uplift_group",
)
REPO_NUM = [n for n in REPO_CATALOG.required_inputs if n not in REPO_STR]
tiers = st.fixed_dictionaries(
    {
        "persona": strings,
        "churn_reasons": strings,
        "conversion_reasons": strings,
        "next_best": strings,
        "next_best_list": strings,
        "churn_tier": st.sampled_from([None, "high", "medium", "low"]),
        "conversion_tier": st.sampled_from([None, "hot", "warm", "cold"]),
        "clv_tier": st.sampled_from([None, "top", "high", "standard"]),
        "uplift_group": st.sampled_from([None, "persuadable", "sure_thing", "lost_cause", "do_not_disturb"]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(_row(numbers, strings, REPO_NUM, []), tiers).map(lambda p: {**p[0], **p[1]}),
        min_size=1,
        max_size=12,
    ),
    r=edges,
    f=edges,
    m=edges,
)
def test_repository_catalog_batch_equals_single(rows, r, f, m):
    def spec(feature, e):
        # the catalog declares 5 bins: 4 edges
        population = REPO_CATALOG.cutpoints["recency"].population  # all three share the buyers' population
        return {"feature": feature, "bins": 5, "population": population, "edges": sorted([*e, e[-1] + 1.0])}

    cutpoints = {
        "cutpoints": {
            "recency": spec("recency_days", r),
            "frequency": spec("frequency_365d", f),
            "monetary": spec("monetary_365d", m),
        }
    }
    _check(REPO_CATALOG, rows, cutpoints)

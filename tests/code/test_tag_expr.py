"""Tag expression language: tokenizer, parser, type checker (with positions), both evaluators."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models import tag_expr as tx

NAMES = {"x": tx.NUMBER, "y": tx.NUMBER, "s": tx.STRING, "b": tx.BOOL}


def _checked(text: str, cuts: dict[str, str] | None = None) -> tx.Node:
    node = tx.parse(text)
    errors = tx.check_types(node, names=NAMES, cutpoints=cuts)
    assert errors == [], [e.message for e in errors]
    return node


def _both(text: str, columns: dict[str, list], edges: dict[str, list[float]] | None = None) -> list:
    """Evaluate with both engines; assert they agree; return the values (None/NaN kept)."""
    node = _checked(text, {k: "x" for k in (edges or {})})
    env = {}
    for name, values in columns.items():
        if NAMES[name] == tx.NUMBER:
            env[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        elif NAMES[name] == tx.STRING:
            env[name] = np.array(values, dtype=object)
        else:
            env[name] = np.array(values, dtype=bool)
    n = len(next(iter(columns.values())))
    vector = tx.compile_vector(node, edges or {})(env, n)
    scalar_fn = tx.compile_scalar(node, edges or {})
    scalar = []
    for i in range(n):
        row = {k: (math.nan if NAMES[k] == tx.NUMBER and v[i] is None else v[i]) for k, v in columns.items()}
        scalar.append(scalar_fn(row))
    for v, s in zip(vector.tolist(), scalar, strict=True):
        if isinstance(s, float) and math.isnan(s):
            assert isinstance(v, float) and math.isnan(v)
        else:
            assert v == s, (text, v, s)
    return scalar


# ------------------------------------------------------------------------------------------- parsing
def test_tokens_carry_positions_and_keywords_are_case_insensitive():
    toks = tx.tokenize("x >= 2.5 AND s = 'it''s'")
    assert [(t.kind, t.text, t.pos) for t in toks[:4]] == [
        ("name", "x", 0),
        ("op", ">=", 2),
        ("num", "2.5", 5),
        ("kw", "and", 9),
    ]
    assert toks[6].value == "it's"


def test_precedence_and_binds_tighter_than_or_and_product_than_sum():
    node = tx.parse("x + y * 2 > 3 or b and not b")
    assert isinstance(node, tx.Binary) and node.op == "or"
    assert isinstance(node.right, tx.Binary) and node.right.op == "and"
    left = node.left
    assert isinstance(left, tx.Compare) and isinstance(left.left, tx.Binary) and left.left.op == "+"
    assert isinstance(left.left.right, tx.Binary) and left.left.right.op == "*"


@pytest.mark.parametrize(
    ("text", "pos", "fragment"),
    [
        ("x >> 3", 3, "unexpected '>'"),
        ("x > 3 )", 6, "after a complete expression"),
        ("(x > 3", 6, "expected ')'"),
        ("x in (1, y)", 9, "literals only"),
        ("x between 1 2", 12, "'and' in 'between"),
        ("s = 'abc", 4, "unterminated string"),
        ("x ? 1", 2, "unexpected character '?'"),
        ("case when b then 1", 18, "'end' closing 'case'"),
        ("eval(x)", 0, "unknown function 'eval'"),
        ("x.__class__", 1, "unexpected character '.'"),
        ("x is 3", 5, "'null' after 'is'"),
        ("", 0, "empty expression"),
    ],
)
def test_syntax_errors_name_the_position(text, pos, fragment):
    with pytest.raises(tx.ExprError) as err:
        tx.parse(text)
    assert err.value.pos == pos
    assert fragment in err.value.message


@pytest.mark.parametrize(
    ("text", "pos", "fragment"),
    [
        ("s > 3", 4, "cannot mix a string and a number"),
        ("s > 'a'", 2, "compares numbers only"),
        ("x + s", 4, "must be a number"),
        ("x and b", 0, "must be a condition"),
        ("not x", 4, "must be a condition"),
        ("zz > 1", 0, "unknown name 'zz'"),
        ("case when b then 1 else 'a' end", 24, "cannot mix a number and a string"),
        ("case when x then 1 end", 10, "'when' condition must be a condition"),
        ("case when b then x > 1 else b end", 0, "must give numbers or strings"),
        ("s in (1, 2)", 6, "cannot mix a string and a number"),
        ("qcut(y, 'r')", 5, "fitted on 'x'"),
        ("qcut(x, 'nope')", 8, "unknown cut points"),
        ("qcut(x)", 0, "qcut takes"),
        ("s between 1 and 2", 0, "must be a number"),
    ],
)
def test_type_errors_name_the_position(text, pos, fragment):
    errors = tx.check_types(tx.parse(text), names=NAMES, cutpoints={"r": "x"})
    assert errors, text
    assert errors[0].pos == pos, [(e.pos, e.message) for e in errors]
    assert fragment in errors[0].message


def test_every_type_error_is_reported_not_only_the_first():
    errors = tx.check_types(tx.parse("s > 1 or nope = 2 or x + 'a' > 1"), names=NAMES)
    assert len(errors) == 3


def test_names_in_lists_each_name_once_in_order():
    assert tx.names_in(tx.parse("y > 1 and x < y or s is null")) == ["y", "x", "s"]


# ---------------------------------------------------------------------------------------- evaluation
def test_arithmetic_and_division_by_zero_is_null():
    out = _both("(x + 1) * 2 / y", {"x": [1.0, 2.0, None, 4.0], "y": [4.0, 0.0, 1.0, -2.0]})
    assert out[0] == 1.0 and math.isnan(out[1]) and math.isnan(out[2]) and out[3] == -5.0


def test_comparisons_with_null_are_false_even_negated_forms():
    cols = {"x": [None, 3.0, 5.0]}
    assert _both("x > 4", cols) == [False, False, True]
    assert _both("x != 3", cols) == [False, False, True]
    assert _both("x not between 1 and 4", cols) == [False, False, True]
    assert _both("x not in (3, 4)", cols) == [False, False, True]
    # plain negation of a false comparison is true: that is what `is null` is for
    assert _both("not (x > 4)", cols) == [True, True, False]
    assert _both("x is null", cols) == [True, False, False]
    assert _both("x is not null", cols) == [False, True, True]


def test_between_is_inclusive_and_in_matches_listed_values():
    cols = {"x": [1.0, 2.0, 3.0, 4.0, -1.0]}
    assert _both("x between 2 and 3", cols) == [False, True, True, False, False]
    assert _both("x in (1, 4, -1)", cols) == [True, False, False, True, True]


def test_strings_equality_in_and_null():
    cols = {"s": ["a", None, "b", "c"]}
    assert _both("s = 'a'", cols) == [True, False, False, False]
    assert _both("s != 'a'", cols) == [False, False, True, True]
    assert _both("s in ('b', 'c')", cols) == [False, False, True, True]
    assert _both("s is null", cols) == [False, True, False, False]


def test_case_takes_first_true_branch_and_null_without_else():
    cols = {"x": [10.0, 5.0, 1.0, None]}
    assert _both("case when x > 8 then 'hi' when x > 4 then 'mid' end", cols) == ["hi", "mid", None, None]
    assert _both("case when x > 8 then 'hi' when x > 6 then 'x' else 'lo' end", cols) == [
        "hi",
        "lo",
        "lo",
        "lo",
    ]
    num = _both("case when x > 4 then x * 2 when x is null then null else 0 end", cols)
    assert num[:3] == [20.0, 10.0, 0.0] and math.isnan(num[3])


def test_coalesce_takes_first_non_null():
    out = _both("coalesce(x, y, 0)", {"x": [None, 1.0, None], "y": [2.0, 3.0, None]})
    assert out == [2.0, 1.0, 0.0]
    assert _both("coalesce(s, 'none')", {"s": [None, "a"]}) == ["none", "a"]


def test_qcut_is_one_based_bisect_right_and_null_stays_null():
    edges = {"r": [10.0, 20.0, 20.0, 40.0]}
    out = _both("qcut(x, 'r')", {"x": [5.0, 10.0, 15.0, 20.0, 39.9, 40.0, 99.0, None]}, edges)
    assert out[:7] == [1.0, 2.0, 2.0, 4.0, 4.0, 5.0, 5.0]
    assert math.isnan(out[7])


def test_booleans_and_unary_minus():
    cols = {"b": [True, False], "x": [1.0, -2.0]}
    assert _both("b = true", cols) == [True, False]
    assert _both("not b or -x > 1", cols) == [False, True]


def test_vector_evaluation_does_not_mutate_inputs():
    node = _checked("coalesce(x, 0) + 1")
    x = np.array([np.nan, 2.0])
    tx.compile_vector(node, {})({"x": x}, 2)
    assert np.isnan(x[0]) and x[1] == 2.0


def test_string_column_from_pandas_with_nan_is_null():
    node = _checked("s is null")
    column = pd.Series(["a", np.nan], dtype=object).to_numpy()
    # the engine normalises NaN to None before evaluation; is-null must treat both as null
    assert tx.compile_vector(node, {})({"s": column}, 2).tolist() == [False, True]

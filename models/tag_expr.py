"""The tag expression language: tokenizer, parser, type checker and two evaluators (vector and scalar).

A small, safe language over feature names, model outputs and earlier tags. Nothing here calls Python's
`eval`; names resolve only to input columns, there is no attribute access and the only functions are
`qcut` and `coalesce`.

Grammar (keywords are case-insensitive)::

    expr     := or
    or       := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | cmp
    cmp      := sum [ ("="|"=="|"!="|"<>"|"<"|"<="|">"|">=") sum
                    | ["not"] "between" sum "and" sum
                    | ["not"] "in" "(" literal ("," literal)* ")"
                    | "is" ["not"] "null" ]
    sum      := product (("+"|"-") product)*
    product  := unary (("*"|"/") unary)*
    unary    := "-" unary | primary
    primary  := number | 'string' | true | false | null | name | name "(" args ")" | "(" expr ")"
              | "case" ("when" expr "then" expr)+ ["else" expr] "end"

Types: `number` (float64, null = NaN), `string` (null = None), `bool` (never null).

Null rule (the same in both evaluators, proven by a property test):
- arithmetic with a null gives null; division by zero gives null;
- every comparison with a null operand is **false**: `=`, `!=`, `<`, `between`, `in` and their `not`
  forms (`x != 3`, `x not between 1 and 2`, `x not in (...)`) are all false when `x` is null;
  ask explicitly with `x is null` / `x is not null`;
- `not`, `and`, `or` work on plain true/false (a null comparison already became false), so
  `not (x > 3)` is true when `x` is null;
- `case` takes the first branch whose condition is true; with no `else`, the result is null;
- `qcut(x, 'name')` is the 1-based bin of `x` among the fitted cut points (`bisect_right + 1`),
  null when `x` is null; `coalesce(a, b, ...)` is the first non-null argument.
"""

from __future__ import annotations

import bisect
import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NUMBER, STRING, BOOL, NULL = "number", "string", "bool", "null"
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "not",
        "between",
        "in",
        "is",
        "null",
        "true",
        "false",
        "case",
        "when",
        "then",
        "else",
        "end",
    }
)
FUNCTIONS = frozenset({"qcut", "coalesce"})
_CMP_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class ExprError(ValueError):
    """A problem in one expression, at `pos` (0-based character offset in the expression text)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


# ---------------------------------------------------------------------------------------------- tokens
@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num | str | name | kw | op | eof
    text: str
    pos: int
    value: Any = None


_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<str>'(?:[^']|'')*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<>|<=|>=|[=<>+\-*/(),])""",
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens; raises ExprError at the first character that starts no token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            if text[pos] == "'":
                raise ExprError("unterminated string (missing closing ')", pos)
            raise ExprError(f"unexpected character {text[pos]!r}", pos)
        kind = m.lastgroup
        raw = m.group()
        if kind == "num":
            tokens.append(Token("num", raw, pos, float(raw)))
        elif kind == "str":
            tokens.append(Token("str", raw, pos, raw[1:-1].replace("''", "'")))
        elif kind == "name":
            low = raw.lower()
            tokens.append(Token("kw", low, pos) if low in KEYWORDS else Token("name", raw, pos))
        elif kind == "op":
            tokens.append(Token("op", raw, pos))
        pos = m.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


# ------------------------------------------------------------------------------------------------- AST
@dataclass(eq=False)
class Node:
    pos: int
    type: str = field(default="", init=False)  # filled by the type checker


@dataclass(eq=False)
class Literal(Node):
    value: Any  # float | str | bool | None


@dataclass(eq=False)
class Name(Node):
    name: str


@dataclass(eq=False)
class Unary(Node):
    op: str  # "-" | "not"
    operand: Node


@dataclass(eq=False)
class Binary(Node):
    op: str  # + - * / and or
    left: Node
    right: Node


@dataclass(eq=False)
class Compare(Node):
    op: str  # = != < <= > >=
    left: Node
    right: Node


@dataclass(eq=False)
class Between(Node):
    operand: Node
    low: Node
    high: Node
    negated: bool


@dataclass(eq=False)
class InList(Node):
    operand: Node
    items: list[Literal]
    negated: bool


@dataclass(eq=False)
class IsNull(Node):
    operand: Node
    negated: bool


@dataclass(eq=False)
class Case(Node):
    whens: list[tuple[Node, Node]]
    default: Node | None


@dataclass(eq=False)
class Call(Node):
    func: str
    args: list[Node]


# ---------------------------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is(self, kind: str, text: str | None = None) -> bool:
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def _expect(self, kind: str, text: str, what: str) -> Token:
        if not self._is(kind, text):
            raise ExprError(f"expected {what}, found {_describe(self.tok)}", self.tok.pos)
        return self._advance()

    def parse(self) -> Node:
        if self._is("eof"):
            raise ExprError("empty expression", 0)
        node = self._or()
        if not self._is("eof"):
            raise ExprError(f"unexpected {_describe(self.tok)} after a complete expression", self.tok.pos)
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._is("kw", "or"):
            op = self._advance()
            node = Binary(op.pos, "or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._is("kw", "and"):
            op = self._advance()
            node = Binary(op.pos, "and", node, self._not())
        return node

    def _not(self) -> Node:
        if self._is("kw", "not"):
            op = self._advance()
            return Unary(op.pos, "not", self._not())
        return self._cmp()

    def _cmp(self) -> Node:
        left = self._sum()
        tok = self.tok
        if tok.kind == "op" and tok.text in _CMP_OPS:
            self._advance()
            return Compare(tok.pos, _CMP_OPS[tok.text], left, self._sum())
        if tok.kind == "kw" and tok.text == "is":
            self._advance()
            negated = False
            if self._is("kw", "not"):
                self._advance()
                negated = True
            self._expect("kw", "null", "'null' after 'is'")
            return IsNull(tok.pos, left, negated)
        negated = False
        if tok.kind == "kw" and tok.text == "not" and self.tokens[self.i + 1].text in ("between", "in"):
            self._advance()
            negated = True
        if self._is("kw", "between"):
            op = self._advance()
            low = self._sum()
            self._expect("kw", "and", "'and' in 'between ... and ...'")
            return Between(op.pos, left, low, self._sum(), negated)
        if self._is("kw", "in"):
            op = self._advance()
            self._expect("op", "(", "'(' after 'in'")
            items = [self._literal()]
            while self._is("op", ","):
                self._advance()
                items.append(self._literal())
            self._expect("op", ")", "')' closing the 'in' list")
            return InList(op.pos, left, items, negated)
        return left

    def _literal(self) -> Literal:
        tok = self.tok
        sign = 1.0
        if self._is("op", "-"):
            self._advance()
            sign = -1.0
            if not self._is("num"):
                raise ExprError(f"expected a number after '-', found {_describe(self.tok)}", self.tok.pos)
        tok2 = self._advance() if self.tok.kind in ("num", "str") else None
        if tok2 is None:
            raise ExprError(f"'in' lists hold literals only, found {_describe(self.tok)}", self.tok.pos)
        return Literal(tok.pos, sign * tok2.value if tok2.kind == "num" else tok2.value)

    def _sum(self) -> Node:
        node = self._product()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self._advance()
            node = Binary(op.pos, op.text, node, self._product())
        return node

    def _product(self) -> Node:
        node = self._unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = self._advance()
            node = Binary(op.pos, op.text, node, self._unary())
        return node

    def _unary(self) -> Node:
        if self._is("op", "-"):
            op = self._advance()
            return Unary(op.pos, "-", self._unary())
        return self._primary()

    def _primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("num", "str"):
            self._advance()
            return Literal(tok.pos, tok.value)
        if tok.kind == "kw" and tok.text in ("true", "false", "null"):
            self._advance()
            return Literal(tok.pos, {"true": True, "false": False, "null": None}[tok.text])
        if tok.kind == "kw" and tok.text == "case":
            return self._case()
        if tok.kind == "name":
            self._advance()
            if self._is("op", "("):
                return self._call(tok)
            return Name(tok.pos, tok.text)
        if self._is("op", "("):
            self._advance()
            node = self._or()
            self._expect("op", ")", "')'")
            return node
        if tok.kind == "eof":
            raise ExprError("expression ends too early", tok.pos)
        raise ExprError(f"unexpected {_describe(tok)}", tok.pos)

    def _call(self, name: Token) -> Node:
        if name.text.lower() not in FUNCTIONS:
            raise ExprError(
                f"unknown function {name.text!r} (available: {', '.join(sorted(FUNCTIONS))})", name.pos
            )
        self._expect("op", "(", "'('")
        args = [self._or()]
        while self._is("op", ","):
            self._advance()
            args.append(self._or())
        self._expect("op", ")", "')' closing the function call")
        return Call(name.pos, name.text.lower(), args)

    def _case(self) -> Node:
        start = self._advance()
        whens: list[tuple[Node, Node]] = []
        while self._is("kw", "when"):
            self._advance()
            cond = self._or()
            self._expect("kw", "then", "'then'")
            whens.append((cond, self._or()))
        if not whens:
            raise ExprError(f"'case' needs at least one 'when', found {_describe(self.tok)}", self.tok.pos)
        default = None
        if self._is("kw", "else"):
            self._advance()
            default = self._or()
        self._expect("kw", "end", "'end' closing 'case'")
        return Case(start.pos, whens, default)


def _describe(tok: Token) -> str:
    return "end of expression" if tok.kind == "eof" else repr(tok.text)


def parse(text: str) -> Node:
    """Parse one expression into an AST; raises ExprError with the position of the problem."""
    return _Parser(text).parse()


def names_in(node: Node) -> list[str]:
    """Every name the expression reads, in order of first appearance (no duplicates)."""
    seen: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Name):
            seen.setdefault(n.name, None)
        for child in _children(n):
            walk(child)

    walk(node)
    return list(seen)


def qcut_calls(node: Node) -> list[Call]:
    """Every `qcut(...)` call in the expression."""
    found: list[Call] = []

    def walk(n: Node) -> None:
        if isinstance(n, Call) and n.func == "qcut":
            found.append(n)
        for child in _children(n):
            walk(child)

    walk(node)
    return found


def _children(n: Node) -> list[Node]:
    if isinstance(n, Unary):
        return [n.operand]
    if isinstance(n, Binary | Compare):
        return [n.left, n.right]
    if isinstance(n, Between):
        return [n.operand, n.low, n.high]
    if isinstance(n, InList):
        return [n.operand, *n.items]
    if isinstance(n, IsNull):
        return [n.operand]
    if isinstance(n, Case):
        out = [x for pair in n.whens for x in pair]
        return out + ([n.default] if n.default is not None else [])
    if isinstance(n, Call):
        return list(n.args)
    return []


# ---------------------------------------------------------------------------------------- type checker
def check_types(
    node: Node, *, names: Mapping[str, str], cutpoints: Mapping[str, str] | None = None
) -> list[ExprError]:
    """Annotate every node with its type and return all problems found (unknown names, type errors).

    `names` maps each readable name to its type (number | string | bool); `cutpoints` maps each
    declared cut-point name to the feature it was fitted on (qcut must apply it to that feature).
    """
    errors: list[ExprError] = []
    cuts = cutpoints or {}

    def err(msg: str, pos: int) -> None:
        errors.append(ExprError(msg, pos))

    def want(n: Node, expected: str, what: str) -> None:
        if n.type not in (expected, NULL, "?"):
            err(f"{what} must be {_article(expected)}, not {_article(n.type)}", n.pos)

    def same(a: Node, b: Node, what: str) -> str:
        ta, tb = a.type, b.type
        if "?" in (ta, tb):
            return "?"
        if ta == NULL:
            return tb
        if tb == NULL or ta == tb:
            return ta
        err(f"{what}: cannot mix {_article(ta)} and {_article(tb)}", b.pos)
        return "?"

    def visit(n: Node) -> str:
        for child in _children(n):
            visit(child)
        n.type = _infer(n)
        return n.type

    def _infer(n: Node) -> str:
        if isinstance(n, Literal):
            v = n.value
            return (
                NULL
                if v is None
                else BOOL
                if isinstance(v, bool)
                else STRING
                if isinstance(v, str)
                else NUMBER
            )
        if isinstance(n, Name):
            if n.name not in names:
                hint = _closest(n.name, names)
                err(f"unknown name {n.name!r}" + (f" (did you mean {hint!r}?)" if hint else ""), n.pos)
                return "?"
            return names[n.name]
        if isinstance(n, Unary):
            if n.op == "-":
                want(n.operand, NUMBER, "the operand of '-'")
                return NUMBER
            want(n.operand, BOOL, "the operand of 'not'")
            return BOOL
        if isinstance(n, Binary):
            expected = BOOL if n.op in ("and", "or") else NUMBER
            want(n.left, expected, f"the left side of '{n.op}'")
            want(n.right, expected, f"the right side of '{n.op}'")
            return expected
        if isinstance(n, Compare):
            t = same(n.left, n.right, f"comparison '{n.op}'")
            if n.op not in ("=", "!=") and t in (STRING, BOOL):
                err(f"'{n.op}' compares numbers only, not {_article(t)}", n.pos)
            return BOOL
        if isinstance(n, Between):
            for part, what in (
                (n.operand, "the value"),
                (n.low, "the lower bound"),
                (n.high, "the upper bound"),
            ):
                want(part, NUMBER, f"{what} of 'between'")
            return BOOL
        if isinstance(n, InList):
            for item in n.items:
                same(n.operand, item, "'in' list")
            return BOOL
        if isinstance(n, IsNull):
            return BOOL
        if isinstance(n, Case):
            for cond, _ in n.whens:
                want(cond, BOOL, "a 'when' condition")
            branches = [v for _, v in n.whens] + ([n.default] if n.default is not None else [])
            t = branches[0].type
            for b in branches[1:]:
                t = same(_Typed(t), b, "'case' branches")
            if t == BOOL:
                err("'case' branches must give numbers or strings (write a condition for true/false)", n.pos)
            return t
        if isinstance(n, Call):
            return _infer_call(n)
        raise AssertionError(type(n))

    def _infer_call(n: Call) -> str:
        if n.func == "coalesce":
            if len(n.args) < 2:
                err("coalesce(a, b, ...) needs at least two arguments", n.pos)
            t = n.args[0].type
            for a in n.args[1:]:
                t = same(_Typed(t), a, "coalesce arguments")
            return t
        # qcut(feature, 'cutpoints')
        if len(n.args) != 2 or not isinstance(n.args[1], Literal) or not isinstance(n.args[1].value, str):
            err(
                "qcut takes a feature name and a cut-point name in quotes: qcut(recency_days, 'recency')",
                n.pos,
            )
            return NUMBER
        feature, cut = n.args
        cut_name = cut.value
        if cut_name not in cuts:
            err(f"unknown cut points {cut_name!r} (declare them under 'cutpoints:')", cut.pos)
        elif not isinstance(feature, Name) or feature.name != cuts[cut_name]:
            err(
                f"cut points {cut_name!r} were fitted on {cuts[cut_name]!r}: apply them to that name",
                feature.pos,
            )
        want(feature, NUMBER, "the first argument of qcut")
        return NUMBER

    visit(node)
    return errors


class _Typed(Node):
    """A stand-in carrying only a type (used while folding the types of case branches)."""

    def __init__(self, t: str) -> None:
        super().__init__(0)
        self.type = t


def _article(t: str) -> str:
    return {NUMBER: "a number", STRING: "a string", BOOL: "a condition (true/false)", NULL: "null"}.get(t, t)


def _closest(name: str, names: Mapping[str, str]) -> str | None:
    match = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
    return match[0] if match else None


# ------------------------------------------------------------------------------------ vector evaluator
VectorFn = Callable[[Mapping[str, np.ndarray], int], np.ndarray]
ScalarFn = Callable[[Mapping[str, Any]], Any]
Cuts = Mapping[str, Sequence[float]]


def _const(value: Any, t: str, n: int) -> np.ndarray:
    if t == NUMBER:
        return np.full(n, np.nan if value is None else float(value))
    if t == BOOL:
        return np.full(n, bool(value))
    out = np.empty(n, dtype=object)
    out[:] = value
    return out


def _notnull(a: np.ndarray, t: str) -> np.ndarray:
    if t == NUMBER:
        return ~np.isnan(a)
    if t == STRING:
        return pd.notna(a)
    return np.ones(len(a), dtype=bool)


def compile_vector(node: Node, cuts: Cuts) -> VectorFn:
    """Compile a type-checked AST into `f(columns, n) -> array` (no per-row Python)."""
    t = node.type if node.type != NULL else NUMBER

    if isinstance(node, Literal):
        value = node.value
        return lambda env, n: _const(value, t, n)
    if isinstance(node, Name):
        key = node.name
        return lambda env, n: env[key]
    if isinstance(node, Unary):
        inner = compile_vector(node.operand, cuts)
        if node.op == "-":
            return lambda env, n: -inner(env, n)
        return lambda env, n: ~inner(env, n)
    if isinstance(node, Binary):
        lf, rf = compile_vector(node.left, cuts), compile_vector(node.right, cuts)
        op = node.op
        if op == "and":
            return lambda env, n: lf(env, n) & rf(env, n)
        if op == "or":
            return lambda env, n: lf(env, n) | rf(env, n)
        if op == "/":

            def divide(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
                a, b = lf(env, n), rf(env, n)
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    out = a / b
                out[b == 0] = np.nan
                return out

            return divide
        ufunc = {"+": np.add, "-": np.subtract, "*": np.multiply}[op]

        def arith(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            with np.errstate(invalid="ignore", over="ignore"):
                return ufunc(lf(env, n), rf(env, n))

        return arith
    if isinstance(node, Compare):
        lf, rf = compile_vector(node.left, cuts), compile_vector(node.right, cuts)
        lt, rt = node.left.type, node.right.type
        if NULL in (lt, rt):
            return lambda env, n: np.zeros(n, dtype=bool)
        op = node.op
        ct = lt
        # a literal side is compared as a scalar: no full-length constant array
        lconst = node.left.value if isinstance(node.left, Literal) else None
        rconst = node.right.value if isinstance(node.right, Literal) else None

        def compare(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            a = lf(env, n) if lconst is None else lconst
            b = rf(env, n) if rconst is None else rconst
            with np.errstate(invalid="ignore"):
                if op == "=":
                    out = a == b
                elif op == "!=":
                    out = a != b
                elif op == "<":
                    out = a < b
                elif op == "<=":
                    out = a <= b
                elif op == ">":
                    out = a > b
                else:
                    out = a >= b
            out = np.array(out, dtype=bool) if np.ndim(out) else np.full(n, bool(out))
            if ct != BOOL:
                if lconst is None:
                    out &= _notnull(a, ct)
                if rconst is None:
                    out &= _notnull(b, ct)
            return out

        return compare
    if isinstance(node, Between):
        vf, lo, hi = (compile_vector(x, cuts) for x in (node.operand, node.low, node.high))
        negated = node.negated

        def between(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            v, a, b = vf(env, n), lo(env, n), hi(env, n)
            with np.errstate(invalid="ignore"):
                inside = (v >= a) & (v <= b)
            if not negated:
                return inside
            return ~inside & ~np.isnan(v) & ~np.isnan(a) & ~np.isnan(b)

        return between
    if isinstance(node, InList):
        vf = compile_vector(node.operand, cuts)
        items = [i.value for i in node.items]
        negated, ot = node.negated, node.operand.type

        def in_list(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            v = vf(env, n)
            if ot == NUMBER:
                hit = np.isin(v, np.asarray(items, dtype=float))
            else:
                hit = pd.Series(v, dtype=object).isin(items).to_numpy()
            return (~hit & _notnull(v, ot)) if negated else hit

        return in_list
    if isinstance(node, IsNull):
        vf = compile_vector(node.operand, cuts)
        negated, ot = node.negated, node.operand.type

        def is_null(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            if ot == NULL:
                return np.full(n, not negated)
            present = _notnull(vf(env, n), ot)
            return present if negated else ~present

        return is_null
    if isinstance(node, Case):
        conds = [compile_vector(c, cuts) for c, _ in node.whens]
        # A literal branch is assigned as a scalar: no full-length array per branch.
        values: list[Any] = [
            _LiteralValue(_typed_null(v.value, t)) if isinstance(v, Literal) else _typed_vector(v, cuts, t)
            for _, v in node.whens
        ]
        default = _typed_vector(node.default, cuts, t) if node.default is not None else None

        def case(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            out = _as(default(env, n), t).copy() if default is not None else _const(None, t, n)
            taken = np.zeros(n, dtype=bool)
            for cf, vfn in zip(conds, values, strict=True):
                hit = cf(env, n) & ~taken
                if hit.any():
                    out[hit] = vfn.value if isinstance(vfn, _LiteralValue) else _as(vfn(env, n), t)[hit]
                taken |= hit
            return out

        return case
    if isinstance(node, Call) and node.func == "coalesce":
        fns = [_typed_vector(a, cuts, t) for a in node.args]

        def coalesce(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            out = _as(fns[0](env, n), t).copy()
            for fn in fns[1:]:
                missing = ~_notnull(out, t)
                if not missing.any():
                    break
                out[missing] = _as(fn(env, n), t)[missing]
            return out

        return coalesce
    if isinstance(node, Call) and node.func == "qcut":
        vf = compile_vector(node.args[0], cuts)
        edges = np.asarray(cuts[node.args[1].value], dtype=float)

        def qcut(env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
            v = vf(env, n)
            out = (np.searchsorted(edges, v, side="right") + 1).astype(float)
            out[np.isnan(v)] = np.nan
            return out

        return qcut
    raise AssertionError(type(node))


@dataclass(frozen=True, slots=True)
class _LiteralValue:
    value: Any


def _typed_null(value: Any, t: str) -> Any:
    if value is None:
        return np.nan if t == NUMBER else None
    return float(value) if t == NUMBER else value


def _typed_vector(node: Node, cuts: Cuts, t: str) -> VectorFn:
    """Compile `node`, giving a bare `null` literal the type of its context (case branch, coalesce)."""
    if isinstance(node, Literal) and node.value is None:
        return lambda env, n: _const(None, t, n)
    return compile_vector(node, cuts)


def _as(a: np.ndarray, t: str) -> np.ndarray:
    if t == STRING and a.dtype != object:
        return a.astype(object)
    if t == NUMBER and a.dtype != float:
        return a.astype(float)
    return a


# ------------------------------------------------------------------------------------ scalar evaluator
def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


_COMPARISONS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_scalar(node: Node, cuts: Cuts) -> ScalarFn:
    """Compile a type-checked AST into `f(values) -> value` for one customer; same rules as the vector."""
    t = node.type if node.type != NULL else NUMBER

    if isinstance(node, Literal):
        value = (math.nan if t == NUMBER else None) if node.value is None else node.value
        if t == NUMBER and value is not None:
            value = float(value)
        return lambda env: value
    if isinstance(node, Name):
        key = node.name
        return lambda env: env[key]
    if isinstance(node, Unary):
        inner = compile_scalar(node.operand, cuts)
        if node.op == "-":
            return lambda env: -inner(env)
        return lambda env: not inner(env)
    if isinstance(node, Binary):
        lf, rf = compile_scalar(node.left, cuts), compile_scalar(node.right, cuts)
        op = node.op
        if op == "and":
            return lambda env: bool(lf(env)) & bool(rf(env))
        if op == "or":
            return lambda env: bool(lf(env)) | bool(rf(env))
        if op == "/":

            def divide(env: Mapping[str, Any]) -> float:
                a, b = lf(env), rf(env)
                if b == 0 or math.isnan(a) or math.isnan(b):
                    return math.nan
                return a / b

            return divide
        if op == "+":
            return lambda env: lf(env) + rf(env)
        if op == "-":
            return lambda env: lf(env) - rf(env)
        return lambda env: lf(env) * rf(env)
    if isinstance(node, Compare):
        lf, rf = compile_scalar(node.left, cuts), compile_scalar(node.right, cuts)
        if NULL in (node.left.type, node.right.type):
            return lambda env: False
        test: Callable[[Any, Any], Any] = _COMPARISONS[node.op]

        def compare(env: Mapping[str, Any]) -> bool:
            # `_present` inlined (None, or a NaN: the only value unequal to itself): the most frequent
            # node of a catalog, evaluated dozens of times per customer
            a = lf(env)
            if a is None or a != a:
                return False
            b = rf(env)
            if b is None or b != b:
                return False
            return bool(test(a, b))

        return compare
    if isinstance(node, Between):
        vf, lo, hi = (compile_scalar(x, cuts) for x in (node.operand, node.low, node.high))
        negated = node.negated

        def between(env: Mapping[str, Any]) -> bool:
            v, a, b = vf(env), lo(env), hi(env)
            if not (_present(v) and _present(a) and _present(b)):
                return False
            inside = a <= v <= b
            return not inside if negated else inside

        return between
    if isinstance(node, InList):
        vf = compile_scalar(node.operand, cuts)
        items = [float(i.value) if node.operand.type == NUMBER else i.value for i in node.items]
        negated = node.negated

        def in_list(env: Mapping[str, Any]) -> bool:
            v = vf(env)
            if not _present(v):
                return False
            hit = any(v == i for i in items)
            return not hit if negated else hit

        return in_list
    if isinstance(node, IsNull):
        vf = compile_scalar(node.operand, cuts)
        negated = node.negated
        return lambda env: _present(vf(env)) if negated else not _present(vf(env))
    if isinstance(node, Case):
        pairs = [(compile_scalar(c, cuts), _typed_scalar(v, cuts, t)) for c, v in node.whens]
        default = _typed_scalar(node.default, cuts, t) if node.default is not None else None
        null = math.nan if t == NUMBER else None

        def case(env: Mapping[str, Any]) -> Any:
            for cf, vfn in pairs:
                if cf(env):
                    return _scalar_as(vfn(env), t)
            return _scalar_as(default(env), t) if default is not None else null

        return case
    if isinstance(node, Call) and node.func == "coalesce":
        fns = [_typed_scalar(a, cuts, t) for a in node.args]
        null = math.nan if t == NUMBER else None

        def coalesce(env: Mapping[str, Any]) -> Any:
            for fn in fns:
                v = fn(env)
                if _present(v):
                    return _scalar_as(v, t)
            return null

        return coalesce
    if isinstance(node, Call) and node.func == "qcut":
        vf = compile_scalar(node.args[0], cuts)
        edges = [float(e) for e in cuts[node.args[1].value]]

        def qcut(env: Mapping[str, Any]) -> float:
            v = vf(env)
            return math.nan if math.isnan(v) else float(bisect.bisect_right(edges, v) + 1)

        return qcut
    raise AssertionError(type(node))


def _typed_scalar(node: Node, cuts: Cuts, t: str) -> ScalarFn:
    if isinstance(node, Literal) and node.value is None:
        null = math.nan if t == NUMBER else None
        return lambda env: null
    return compile_scalar(node, cuts)


def _scalar_as(v: Any, t: str) -> Any:
    if t == NUMBER:
        return math.nan if v is None else float(v)
    return v

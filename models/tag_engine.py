"""The tag catalog (`configs/tags.yaml`) and its engine: one definition, evaluated in batch and online.

- `parse_catalog(raw, known_names=...)` checks the whole catalog up front and raises one `CatalogError`
  listing every problem (tag key, field, and the column in the expression).
- `Catalog.evaluate(frame, cutpoints)` tags a whole DataFrame with vectorised numpy (no per-row Python);
  `Catalog.evaluate_one(values, cutpoints)` tags one customer from a dict. Both give identical values.
- `fit_cutpoints(catalog, frame)` fits the quantile cut points that `qcut(...)` uses, once, at training
  time, on each cut point's declared population, with tie-aware equal-frequency edges (`rank_edges`);
  serving only applies them.

Tags may refer to tags defined **earlier** in the catalog (e.g. `rfm_segment` reads `rfm_r`); the
catalog order is the evaluation order, so cycles cannot occur. Referring to a later tag is an error.

Value types and what they evaluate to: `flag` -> bool, `number` -> float (null = NaN), `tier` ->
string from an ordered `values` list, `category` -> string (optionally from `values`); null = None.
In the CRM, values travel as strings (`format_values`): flags `true`/`false`, numbers without trailing
zeros (`3`, `0.25`), null as None (unset).

Only `read_catalog_file`, `read_cutpoints` and `write_cutpoints` touch files; everything else is pure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from core.errors import CatalogError, ValidationFailed
from models import tag_expr as tx

KINDS = ("rule", "model", "segment")
VALUE_TYPES = ("flag", "tier", "number", "category")
CADENCES = ("realtime", "hourly", "daily", "weekly", "monthly")
_TYPE_OF_VALUE = {"flag": tx.BOOL, "number": tx.NUMBER, "tier": tx.STRING, "category": tx.STRING}
_REQUIRED = ("key", "description", "kind", "type", "cadence", "owner", "version", "crm_field")
_OPTIONAL = ("expr", "cases", "else", "values", "model", "decimals", "records", "sources", "priority")
SOURCES = ("orders", "contacts", "events", "leads")  # the raw sources a tag may depend on
PRIORITIES = ("core", "standard", "experimental")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Model outputs every catalog may read (name -> type), fixed by docs/CONTRACTS.md.
MODEL_OUTPUTS: dict[str, str] = {
    "segment_id": tx.NUMBER,
    "persona": tx.STRING,
    "churn_probability": tx.NUMBER,
    "churn_tier": tx.STRING,
    "conversion_probability": tx.NUMBER,
    "conversion_tier": tx.STRING,
    # the top reasons raising each probability, in words (models/reasons.py), e.g. "no order for 120 days"
    "churn_reasons": tx.STRING,
    "conversion_reasons": tx.STRING,
    "clv_value": tx.NUMBER,
    "clv_tier": tx.STRING,
    "next_best": tx.STRING,  # recommender: the top category (or product)
    "next_best_list": tx.STRING,  # its top k, comma-separated, best first
    "uplift_score": tx.NUMBER,
    "uplift_group": tx.STRING,
}


@dataclass(frozen=True)
class CutpointSpec:
    """Quantile cut points declared in the catalog: `bins` equal-frequency bins of `feature`, fitted on
    the customers for whom `population` (a condition of the tag language; None = everyone) holds."""

    name: str
    feature: str
    bins: int
    population: str | None = None
    population_ast: tx.Node | None = field(default=None, repr=False, compare=False)


@dataclass
class TagDef:
    """One tag of the catalog, checked and compiled."""

    key: str
    description: str
    kind: str
    value_type: str
    cadence: str
    owner: str
    version: int
    crm_field: str
    expr: str  # the expression text (a `cases:` list is shown as its equivalent `case ... end`)
    values: tuple[str, ...] | None = None
    model: str | None = None
    decimals: int = 6
    inputs: tuple[str, ...] = ()  # names the expression reads (features, model outputs, earlier tags)
    cutpoints: tuple[str, ...] = ()  # cut-point names used through qcut
    records: tuple[str, ...] = ()  # extra names recorded with each change (e.g. probability, reasons)
    sources: tuple[str, ...] = ()  # the raw sources the tag depends on (absent source: tag skipped)
    priority: str = "standard"  # core | standard | experimental
    ast: tx.Node | None = field(default=None, repr=False)

    @property
    def rule_version(self) -> str:
        """`rule:<key>@v<version>`, the produced_by of rule and segment tags."""
        return f"rule:{self.key}@v{self.version}"


@dataclass
class Catalog:
    """The checked catalog: tags in evaluation order, cut-point declarations, input types."""

    version: str
    tags: list[TagDef]
    cutpoints: dict[str, CutpointSpec]
    input_types: dict[str, str]  # every external input (feature or model output) the catalog reads
    source: str = "configs/tags.yaml"
    notes: list[str] = field(default_factory=list)  # e.g. tags skipped because their source is absent
    skipped: tuple[str, ...] = ()  # tags whose source is absent: always unset (see `without_sources`)
    _compiled: dict[Any, list[Any]] = field(
        default_factory=dict, repr=False
    )  # see `_functions`, `one_customer`

    def _functions(self, mode: str, edges: dict[str, list[float]]) -> list[Any]:
        """Compiled evaluators of every tag, cached per set of cut points (online calls reuse them)."""
        cache_key = (mode, tuple(sorted((k, tuple(v)) for k, v in edges.items())))
        if cache_key not in self._compiled:
            compile_fn = tx.compile_vector if mode == "vector" else tx.compile_scalar
            self._compiled[cache_key] = [compile_fn(t.ast, edges) for t in self.tags]
        return self._compiled[cache_key]

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.tags]

    def tag(self, key: str) -> TagDef:
        for t in self.tags:
            if t.key == key:
                return t
        raise KeyError(key)

    @property
    def crm_fields(self) -> dict[str, str]:
        return {t.key: t.crm_field for t in self.tags}

    @property
    def tag_inputs(self) -> dict[str, list[str]]:
        """Per tag, the names recorded with its changes: what its expression reads, then its `records`."""
        return {t.key: list(dict.fromkeys([*t.inputs, *t.records])) for t in self.tags}

    def depending_on(self, names: Iterable[str]) -> list[str]:
        """The tags that read any of `names`, directly or through an earlier tag (catalog order)."""
        reached = set(names)
        out = []
        for t in self.tags:  # a tag reads only inputs and earlier tags: one pass in order suffices
            if reached & set(t.inputs):
                reached.add(t.key)
                out.append(t.key)
        return out

    @property
    def required_inputs(self) -> list[str]:
        return sorted(self.input_types)

    def produced_by(self, model_versions: Mapping[str, str] | None = None) -> dict[str, str]:
        """Per tag, what produced it: `rule:<key>@v<n>`, or `model:<registered model>@<version>`."""
        versions = model_versions or {}
        out = {}
        for t in self.tags:
            if t.kind == "model" and t.model:
                out[t.key] = f"model:{t.model}@{versions.get(t.model, 'unknown')}"
            else:
                out[t.key] = t.rule_version
        return out

    def without_sources(self, absent: set[str]) -> tuple[Catalog, list[str]]:
        """The catalog with the tags that depend on an absent source (and the tags reading those) marked
        `skipped`: scoring leaves them unset, `tags list` says why. One note per skipped tag."""
        skipped: dict[str, str] = {}
        for t in self.tags:
            missing = sorted(set(t.sources) & absent)
            if missing:
                skipped[t.key] = f"source {', '.join(missing)} absent"
                continue
            upstream = [n for n in (*t.inputs, *t.records) if n in skipped]
            if upstream:
                skipped[t.key] = f"reads skipped tag {upstream[0]}"
        notes = [f"tag {key} skipped (left unset): {why}" for key, why in skipped.items()]
        if not skipped:
            return self, []
        return replace(self, notes=[*self.notes, *notes], skipped=tuple(skipped), _compiled={}), notes

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, frame: pd.DataFrame, cutpoints: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Tag every row of `frame` (one column per input). Returns one column per tag, same index.

        Columns: flag -> bool, number -> float64 (NaN = null), tier/category -> object (None = null).
        """
        missing = [name for name in self.required_inputs if name not in frame.columns]
        if missing:
            raise ValidationFailed(
                f"the frame to tag lacks column(s) {', '.join(missing)} needed by tags "
                + ", ".join(t.key for t in self.tags if set(t.inputs) & set(missing)),
                hint="pass the features of the FeatureServices and the model outputs",
            )
        edges = self._edges(cutpoints)
        n = len(frame)
        ids = frame["customer_id"].to_numpy() if "customer_id" in frame.columns else None
        env: dict[str, np.ndarray] = {
            name: _column(frame[name], t, name, ids) for name, t in self.input_types.items()
        }
        out: dict[str, np.ndarray] = {}
        for tag, fn in zip(self.tags, self._functions("vector", edges), strict=True):
            values = tx._as(fn(env, n), _TYPE_OF_VALUE[tag.value_type])
            if tag.value_type == "number":
                values = _round(values, tag.decimals)
            if tag.values is not None:
                _check_allowed(tag, values, frame)
            out[tag.key] = values
            env[tag.key] = values
        return pd.DataFrame(out, index=frame.index, copy=False)  # copy=False: no block consolidation

    def evaluate_one(
        self, values: Mapping[str, Any], cutpoints: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Tag one customer from a mapping of input name -> value (None or NaN = null).

        Gives exactly what `evaluate` gives for the same row (a property test holds it to that).
        """
        return self.one_customer(cutpoints)(values)

    def one_customer(self, cutpoints: Mapping[str, Any] | None = None) -> Callable[[Mapping[str, Any]], dict]:
        """`evaluate_one` for these cut points, checked and compiled once: the CRM's one-customer request
        would otherwise check every cut point and look its compiled tags up again per customer.

        Cached per cut-points object (held by the cache, so its id cannot be reused while cached)."""
        key = ("one", id(cutpoints))
        cached = self._compiled.get(key)
        if cached is not None and cached[0] is cutpoints:
            return cached[1]
        edges = self._edges(cutpoints)
        plan = [
            (
                tag,
                fn,
                _TYPE_OF_VALUE[tag.value_type],
                tag.decimals if tag.value_type == "number" else None,
                tag.values,
            )
            for tag, fn in zip(self.tags, self._functions("scalar", edges), strict=True)
        ]
        inputs = tuple(self.input_types.items())
        required = self.required_inputs

        def evaluate(values: Mapping[str, Any]) -> dict[str, Any]:
            missing = [name for name in required if name not in values]
            if missing:
                raise ValidationFailed(
                    f"the customer's values lack {', '.join(missing)} (needed by the tag catalog)"
                )
            env: dict[str, Any] = {name: _scalar(values[name], t, name) for name, t in inputs}
            out: dict[str, Any] = {}
            for tag, fn, value_type, decimals, allowed in plan:
                value = tx._scalar_as(fn(env), value_type)
                if decimals is not None:
                    value = _round_one(value, decimals)
                if allowed is not None and value is not None and value not in allowed:
                    raise ValidationFailed(
                        f"tag {tag.key!r} gave {value!r}, not one of its values {list(allowed)} "
                        f"(customer {values.get('customer_id', '?')})"
                    )
                out[tag.key] = value
                env[tag.key] = value
            return out

        self._compiled[key] = [cutpoints, evaluate]
        return evaluate

    def _edges(self, cutpoints: Mapping[str, Any] | None) -> dict[str, list[float]]:
        """Validate the fitted cut points against the catalog's declarations."""
        needed = sorted({c for t in self.tags for c in t.cutpoints})
        if not needed:
            return {}
        fitted = (cutpoints or {}).get("cutpoints", cutpoints or {})
        problems, edges = [], {}
        for name in needed:
            spec, got = self.cutpoints[name], fitted.get(name)
            if got is None:
                problems.append(f"cut points {name!r} are not fitted")
                continue
            if got.get("feature") != spec.feature or int(got.get("bins", -1)) != spec.bins:
                problems.append(
                    f"cut points {name!r} were fitted for {got.get('feature')!r} in {got.get('bins')} bins, "
                    f"the catalog declares {spec.feature!r} in {spec.bins} bins"
                )
                continue
            if got.get("population") != spec.population:
                problems.append(
                    f"cut points {name!r} were fitted on population {got.get('population')!r}, "
                    f"the catalog declares {spec.population!r}"
                )
                continue
            e = [float(x) for x in got.get("edges", [])]
            if len(e) != spec.bins - 1 or any(b < a for a, b in zip(e, e[1:], strict=False)):
                problems.append(f"cut points {name!r} need {spec.bins - 1} ascending edges, got {e}")
                continue
            edges[name] = e
        if problems:
            raise CatalogError("; ".join(problems), hint="run `persona tags fit` (or retrain) to fit them")
        return edges


# --------------------------------------------------------------------------------------- conversions
def _column(series: pd.Series, t: str, name: str, ids: np.ndarray | None = None) -> np.ndarray:
    """An input column as the engine's array: float64 with NaN, or object with None."""
    if t == tx.STRING:
        mask = series.isna().to_numpy()
        values = series.to_numpy(dtype=object)
        if series.dtype == object or isinstance(series.dtype, pd.StringDtype | pd.CategoricalDtype):
            if mask.any():  # pd.NA/NaN inside object columns become None
                values = values.copy()
                values[mask] = None
            return values
        out = np.array([None if m else str(v) for v, m in zip(values, mask, strict=True)], dtype=object)
        return out
    try:
        return pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        bad = (pd.to_numeric(series, errors="coerce").isna() & series.notna()).to_numpy()
        row = int(np.flatnonzero(bad)[0])
        who = f"customer {ids[row]} (row {row + 1})" if ids is not None else f"row {row + 1}"
        raise ValidationFailed(f"input {name!r} must be numeric; {who} holds {series.iloc[row]!r}") from None


def _scalar(value: Any, t: str, name: str) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return math.nan if t == tx.NUMBER else None
    if t == tx.STRING:
        return value if isinstance(value, str) else str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationFailed(f"input {name!r} must be numeric, got {value!r}") from None


def _round(values: np.ndarray, decimals: int) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # huge values round to inf, as they should
        return np.round(values, decimals)


def _round_one(value: float, decimals: int) -> float:
    """`_round` of one value without an array: numpy's algorithm (scale, round half to even, unscale;
    Python's round(x, n) rounds the exact decimal instead and differs on ties), the sign of a zero kept
    as `np.rint` keeps it. tests/model/test_tag_equivalence.py holds the two to the same bits."""
    scale = 10.0 ** abs(decimals)
    scaled = value * scale if decimals >= 0 else value / scale
    if math.isfinite(scaled):  # inf and NaN pass as they are, as through np.rint
        scaled = math.copysign(float(round(scaled)), scaled)
    return scaled / scale if decimals >= 0 else scaled * scale


def _check_allowed(tag: TagDef, values: np.ndarray, frame: pd.DataFrame) -> None:
    # one hashing pass; only the (few) distinct values are checked against the list
    codes, uniques = pd.factorize(values)
    allowed = set(tag.values or ())
    bad_codes = [i for i, u in enumerate(uniques) if u not in allowed]
    if bad_codes:
        bad = np.isin(codes, bad_codes)
        i = int(np.flatnonzero(bad)[0])
        who = frame["customer_id"].iloc[i] if "customer_id" in frame.columns else frame.index[i]
        raise ValidationFailed(
            f"tag {tag.key!r} gave {values[i]!r} for customer {who} ({int(bad.sum())} rows in all), "
            f"not one of its values {list(tag.values or ())}"
        )


def format_value(value: Any, value_type: str) -> str | None:
    """One tag value as the string the CRM and the tag store see (None = unset)."""
    if value_type == "flag":
        return "true" if bool(value) else "false"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value_type == "number":
        return _format_number(float(value))
    return str(value)


def _format_number(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return np.format_float_positional(x, precision=10, trim="-")


def format_one(tags: Mapping[str, Any], catalog: Catalog) -> dict[str, str | None]:
    """One customer's tags (from `Catalog.evaluate_one`) as the CRM sees them; same as `format_values`."""
    types = {t.key: t.value_type for t in catalog.tags}  # once, not a search of the catalog per tag
    return {key: format_value(value, types[key]) for key, value in tags.items()}


def format_values(tags: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """The evaluated tags as strings (None = unset), vectorised except for non-integral numbers."""
    out = {}
    for key in tags.columns:
        if key not in catalog.keys:
            out[key] = tags[key]
            continue
        vt = catalog.tag(key).value_type
        col = tags[key].to_numpy()
        if vt == "flag":
            out[key] = _FLAG_STRINGS[col.astype(bool).view(np.int8)]
        elif vt == "number":
            out[key] = format_number_array(col.astype(float))
        else:
            out[key] = col
    return pd.DataFrame(out, index=tags.index, copy=False)


_FLAG_STRINGS = np.array(["false", "true"], dtype=object)


def format_number_array(col: np.ndarray) -> np.ndarray:
    """`_format_number` over an array: each distinct value is formatted once (hashing, no per-row
    Python), so scores and segment ids cost a take; NaN becomes None."""
    codes, uniques = pd.factorize(col)  # NaN -> code -1
    labels = np.array([_format_number(float(u)) for u in uniques] + [None], dtype=object)
    return labels[codes]  # code -1 picks the trailing None


# ------------------------------------------------------------------------------------------ checking
def parse_catalog(
    raw: Mapping[str, Any],
    *,
    known_names: Iterable[str],
    string_names: Iterable[str],
    source: str = "configs/tags.yaml",
) -> Catalog:
    """Check a catalog mapping (parsed YAML) and compile it; raise CatalogError listing every problem.

    `known_names`: the features of the FeatureServices plus the model outputs (`artifacts.catalog` gives
    them); `string_names`: which of them hold strings.
    """
    known = set(known_names)
    strings = set(string_names)
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{source}: the catalog must be a mapping with 'version', 'cutpoints', 'tags'")
    for extra in sorted(set(raw) - {"version", "cutpoints", "tags"}):
        problems.append(f"{source}: unknown top-level key {extra!r}")
    version = raw.get("version")
    if version is None or str(version).strip() == "":
        problems.append(f"{source}: missing 'version' (the catalog version)")

    cutpoints: dict[str, CutpointSpec] = {}
    for name, spec in (raw.get("cutpoints") or {}).items():
        where = f"{source}: cutpoints.{name}"
        if not isinstance(spec, Mapping) or "feature" not in spec or "bins" not in spec:
            problems.append(f"{where}: give 'feature' and 'bins'")
            continue
        bins = spec["bins"]
        if not isinstance(bins, int) or isinstance(bins, bool) or not 2 <= bins <= 100:
            problems.append(f"{where}.bins: must be an integer from 2 to 100, got {bins!r}")
            continue
        if spec["feature"] not in known:
            problems.append(f"{where}.feature: unknown feature {spec['feature']!r}")
        for extra in sorted(set(spec) - {"feature", "bins", "population"}):
            problems.append(f"{where}: unknown field {extra!r}")
        population, population_ast = spec.get("population"), None
        if population is not None:
            population_ast = _population(
                str(population), where=f"{where}.population", known=known, strings=strings, problems=problems
            )
        cutpoints[str(name)] = CutpointSpec(
            str(name),
            str(spec["feature"]),
            bins,
            None if population is None else str(population),
            population_ast,
        )

    entries = raw.get("tags")
    if not isinstance(entries, list) or not entries:
        problems.append(f"{source}: 'tags' must be a non-empty list")
        entries = []

    names: dict[str, str] = {n: (tx.STRING if n in strings else tx.NUMBER) for n in known}
    tags: list[TagDef] = []
    seen_keys: dict[str, int] = {}
    seen_fields: dict[str, str] = {}
    later_keys = {e.get("key") for e in entries if isinstance(e, Mapping)}
    for i, entry in enumerate(entries, start=1):
        tag = _check_tag(
            entry,
            index=i,
            source=source,
            names=names,
            cutpoints=cutpoints,
            later_keys=later_keys,
            problems=problems,
        )
        if tag is None:
            continue
        where = f"{source}: tag {tag.key!r} (entry {i})"
        if tag.key in seen_keys:
            problems.append(f"{where}: duplicate key (first defined in entry {seen_keys[tag.key]})")
            continue
        if tag.key in known:
            problems.append(f"{where}: key clashes with the input name {tag.key!r}; pick another key")
            continue
        if tag.crm_field in seen_fields:
            problems.append(
                f"{where}: crm_field {tag.crm_field!r} is already used by tag {seen_fields[tag.crm_field]!r}"
            )
        seen_keys[tag.key] = i
        seen_fields[tag.crm_field] = tag.key
        names[tag.key] = _TYPE_OF_VALUE[tag.value_type]  # later tags may read this one
        tags.append(tag)
    if problems:
        raise CatalogError(
            f"the tag catalog has {len(problems)} problem(s):\n  " + "\n  ".join(problems),
            hint=f"fix {source}; a bad catalog never reaches serving",
        )
    tag_keys = {t.key for t in tags}
    # what evaluation reads; `records` are only kept with changes (the tag store takes them from inputs)
    input_types = {n: names[n] for t in tags for n in t.inputs if n not in tag_keys}
    for spec in cutpoints.values():
        input_types.setdefault(spec.feature, names.get(spec.feature, tx.NUMBER))
    return Catalog(
        version=str(version), tags=tags, cutpoints=cutpoints, input_types=input_types, source=source
    )


def _check_tag(
    entry: Any,
    *,
    index: int,
    source: str,
    names: dict[str, str],
    cutpoints: dict[str, CutpointSpec],
    later_keys: set[Any],
    problems: list[str],
) -> TagDef | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{source}: tags entry {index} must be a mapping, got {type(entry).__name__}")
        return None
    key = entry.get("key")
    where = f"{source}: tag {key!r} (entry {index})" if key else f"{source}: tags entry {index}"
    before = len(problems)
    for name in _REQUIRED:
        if entry.get(name) in (None, ""):
            problems.append(f"{where}: missing field {name!r}")
    for name in sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL)):
        problems.append(f"{where}: unknown field {name!r}")
    if key and (not isinstance(key, str) or not _KEY_RE.match(key)):
        problems.append(f"{where}: key must be snake_case (a-z, 0-9, _), got {key!r}")
    kind, vt = entry.get("kind"), entry.get("type")
    if kind and kind not in KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if vt and vt not in VALUE_TYPES:
        problems.append(f"{where}: type must be one of {', '.join(VALUE_TYPES)}, got {vt!r}")
    if entry.get("cadence") and entry["cadence"] not in CADENCES:
        problems.append(f"{where}: cadence must be one of {', '.join(CADENCES)}, got {entry['cadence']!r}")
    version = entry.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        problems.append(f"{where}: version must be a positive integer, got {version!r}")
    if kind == "model" and not entry.get("model"):
        problems.append(f"{where}: a model tag names its registered model in 'model' (e.g. persona-churn)")
    values = entry.get("values")
    if vt == "tier" and not values:
        problems.append(f"{where}: a tier lists its ordered 'values' (e.g. [high, medium, low])")
    if values is not None and (
        not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values)
    ):
        problems.append(f"{where}: 'values' must be a list of strings, got {values!r}")
        values = None
    decimals = entry.get("decimals", 6)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 12:
        problems.append(f"{where}: decimals must be an integer from 0 to 12, got {decimals!r}")
        decimals = 6
    records = entry.get("records", [])
    if not isinstance(records, list) or not all(isinstance(r, str) for r in records):
        problems.append(f"{where}: 'records' must be a list of names, got {records!r}")
        records = []
    for r in records:
        if r not in names:
            problems.append(f"{where}: records: unknown name {r!r} (features, model outputs, earlier tags)")
    sources = entry.get("sources", [])
    if not isinstance(sources, list) or any(x not in SOURCES for x in sources):
        problems.append(f"{where}: 'sources' must be a list of {', '.join(SOURCES)}, got {sources!r}")
        sources = []
    priority = entry.get("priority", "standard")
    if priority not in PRIORITIES:
        problems.append(f"{where}: priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    has_expr, has_cases = "expr" in entry, "cases" in entry
    if has_expr == has_cases:
        problems.append(f"{where}: give exactly one of 'expr' or 'cases'")
    if "else" in entry and not has_cases:
        problems.append(f"{where}: 'else' belongs to a 'cases' list")
    if len(problems) > before:
        return None

    text, parts, ast = _expression(entry, where=where, problems=problems)
    if ast is None:
        return None
    # names of later tags are reported as ordering problems, not as unknown names
    later = [n for n in tx.names_in(ast) if n not in names and n in later_keys]
    for n in later:
        problems.append(
            f"{where}: refers to tag {n!r} defined later; tags may only read tags defined before them"
        )
    if later:
        return None
    cuts = {c.name: c.feature for c in cutpoints.values()}
    for label, part_text, node in parts:
        for e in tx.check_types(node, names=names, cutpoints=cuts):
            problems.append(
                f"{where}: {label} column {e.pos + 1}: {e.message}  [{_excerpt(part_text, e.pos)}]"
            )
    if len(problems) > before:
        return None
    if isinstance(ast, tx.Case) and parts[0][0] != "expr":
        for e in tx.check_types(ast, names=names, cutpoints=cuts):  # branch types of a `cases:` list
            problems.append(f"{where}: cases: {e.message}")
        if len(problems) > before:
            return None
    expected = _TYPE_OF_VALUE[vt]
    if ast.type not in (expected,):
        what = "a condition (true/false)" if vt == "flag" else tx._article(expected)
        problems.append(f"{where}: a {vt} tag needs {what}, the expression gives {tx._article(ast.type)}")
        return None
    if values is not None:
        for lit in _result_literals(ast):
            if lit.value is not None and lit.value not in values:
                at = f"expr column {lit.pos + 1}" if parts[0][0] == "expr" else "cases"
                problems.append(f"{where}: {at}: value {lit.value!r} is not one of {values}")
    if kind == "segment" and not (isinstance(ast, tx.Case) and ast.default is not None):
        problems.append(f"{where}: a segment assigns every customer: give a 'cases' list with an 'else'")
    if len(problems) > before:
        return None
    return TagDef(
        key=key,
        description=str(entry["description"]).strip(),
        kind=kind,
        value_type=vt,
        cadence=entry["cadence"],
        owner=str(entry["owner"]),
        version=version,
        crm_field=str(entry["crm_field"]),
        expr=text,
        values=tuple(values) if values else None,
        model=entry.get("model"),
        decimals=decimals,
        inputs=tuple(tx.names_in(ast)),
        records=tuple(records),
        sources=tuple(sources),
        priority=str(priority),
        cutpoints=tuple(c.args[1].value for c in tx.qcut_calls(ast)),
        ast=ast,
    )


def _population(
    text: str, *, where: str, known: set[str], strings: set[str], problems: list[str]
) -> tx.Node | None:
    """Parse and type-check a cut point's population condition (features only)."""
    try:
        node = tx.parse(text)
    except tx.ExprError as e:
        problems.append(f"{where} column {e.pos + 1}: {e.message}  [{_excerpt(text, e.pos)}]")
        return None
    names = {n: (tx.STRING if n in strings else tx.NUMBER) for n in known}
    errors = tx.check_types(node, names=names)
    for e in errors:
        problems.append(f"{where} column {e.pos + 1}: {e.message}  [{_excerpt(text, e.pos)}]")
    if not errors and node.type != tx.BOOL:
        problems.append(f"{where}: {text!r} is not a condition (true/false)")
        return None
    return None if errors else node


_Parts = list[tuple[str, str, tx.Node]]


def _expression(
    entry: Mapping[str, Any], *, where: str, problems: list[str]
) -> tuple[str, _Parts, tx.Node | None]:
    """Parse `expr`, or build the `case` equivalent of a `cases:` list.

    Returns the text shown for the tag, the parsed parts (label, text, node) whose positions error
    messages refer to, and the whole expression.
    """
    if "expr" in entry:
        text = str(entry["expr"])
        try:
            node = tx.parse(text)
        except tx.ExprError as e:
            problems.append(f"{where}: expr column {e.pos + 1}: {e.message}  [{_excerpt(text, e.pos)}]")
            return text, [], None
        return text, [("expr", text, node)], node
    cases = entry["cases"]
    if not isinstance(cases, list) or not cases:
        problems.append(f"{where}: 'cases' must be a non-empty list of {{when: ..., then: ...}}")
        return "", [], None
    whens: list[tuple[tx.Node, tx.Node]] = []
    parts: _Parts = []
    shown = []
    ok = True
    for j, case in enumerate(cases, start=1):
        if not isinstance(case, Mapping) or set(case) != {"when", "then"}:
            problems.append(f"{where}: cases[{j}] must have exactly 'when' and 'then'")
            ok = False
            continue
        cond_text = str(case["when"])
        try:
            cond = tx.parse(cond_text)
        except tx.ExprError as e:
            problems.append(
                f"{where}: cases[{j}].when column {e.pos + 1}: {e.message}  [{_excerpt(cond_text, e.pos)}]"
            )
            ok = False
            continue
        # `then` is a literal value (string, number or null), not an expression
        then = case["then"]
        if isinstance(then, bool) or not (then is None or isinstance(then, str | int | float)):
            problems.append(f"{where}: cases[{j}].then must be a string, a number or null, got {then!r}")
            ok = False
            continue
        whens.append((cond, tx.Literal(0, float(then) if isinstance(then, int | float) else then)))
        parts.append((f"cases[{j}].when", cond_text, cond))
        shown.append(f"when {cond_text} then {_show_literal(then)}")
    if not ok:
        return "", [], None
    default = None
    if "else" in entry:
        d = entry["else"]
        if isinstance(d, bool) or not (d is None or isinstance(d, str | int | float)):
            problems.append(f"{where}: 'else' must be a string, a number or null, got {d!r}")
            return "", [], None
        default = tx.Literal(0, float(d) if isinstance(d, int | float) else d)
        shown.append(f"else {_show_literal(d)}")
    return "case " + " ".join(shown) + " end", parts, tx.Case(0, whens, default)


def _show_literal(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def _result_literals(ast: tx.Node) -> list[tx.Literal]:
    """Literal values the expression can return (branches of a top-level case, or the literal itself)."""
    if isinstance(ast, tx.Literal):
        return [ast]
    if isinstance(ast, tx.Case):
        branches = [v for _, v in ast.whens] + ([ast.default] if ast.default is not None else [])
        return [lit for b in branches for lit in _result_literals(b)]
    return []


def _excerpt(text: str, pos: int) -> str:
    return (
        text[:pos] + " >>>" + text[pos:]
        if len(text) <= 80
        else text[max(0, pos - 30) : pos] + " >>>" + text[pos : pos + 30]
    )


# -------------------------------------------------------------------------------------- cut points
def rank_edges(values: np.ndarray, bins: int) -> list[float]:
    """`bins - 1` ascending edges for `qcut` (score = 1 + number of edges <= x) that split `values` into
    bins as close to equal-frequency as ties allow, cutting only BETWEEN distinct values (equal values
    always share a score) and leaving no score empty when there are at least `bins` distinct values.

    Plain quantiles fail on heavy ties: when 60 % of customers bought once, the 0.2 and 0.4 quantiles
    are both 1 and scores 1-2 never occur. Here each edge b is placed at the gap between distinct
    values whose cumulative count is nearest to b/bins of the rows, subject to leaving at least one
    distinct value for every bin still to come. With fewer distinct values than bins, each value takes
    the score of its mid-rank (ceil(bins * mid-rank / n)), so e.g. a 0/1 feature gets two far-apart
    scores rather than 1 and 2. An edge sits half-way between the two distinct values it separates.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    uniq, counts = np.unique(v, return_counts=True)
    n, m = int(v.size), int(uniq.size)
    cum = np.cumsum(counts)
    if m >= bins:
        score = np.ones(m, dtype=int)
        last = -1  # index of the last distinct value in the bins placed so far
        for b in range(1, bins):
            lo, hi = last + 1, m - 1 - (bins - b)  # gap after index j: lower part is uniq[: j + 1]
            candidates = np.arange(lo, hi + 1)
            target = b * n / bins
            j = int(candidates[np.argmin(np.abs(cum[candidates] - target))])
            score[j + 1 :] += 1
            last = j
    else:
        mid_rank = cum - counts / 2.0
        score = np.clip(np.ceil(bins * mid_rank / n).astype(int), 1, bins)
    edges = []
    for b in range(1, bins):
        below, above = uniq[score <= b], uniq[score > b]
        if below.size and above.size:
            edges.append(float((below[-1] + above[0]) / 2.0))
        elif above.size:  # nothing scores <= b: the edge sits at the smallest value
            edges.append(float(uniq[0]))
        else:  # nothing scores above b: just past the largest value
            edges.append(float(np.nextafter(uniq[-1], np.inf)))
    return edges


def _name_types(node: tx.Node) -> dict[str, str]:
    """Name -> type as the type checker annotated it."""
    out: dict[str, str] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tx.Name):
            out[n.name] = n.type
        stack.extend(tx._children(n))
    return out


def population_mask(spec: CutpointSpec, frame: pd.DataFrame) -> np.ndarray:
    """Rows of `frame` a cut point is fitted on (all rows without a population)."""
    if spec.population_ast is None:
        return np.ones(len(frame), dtype=bool)
    names = tx.names_in(spec.population_ast)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise CatalogError(
            f"cut points {spec.name!r}: the frame has no column(s) {', '.join(missing)} "
            f"(population {spec.population!r})"
        )
    # the type of each name was fixed when the catalog was checked (the ast's Name nodes carry it)
    types = _name_types(spec.population_ast)
    env = {n: _column(frame[n], types.get(n, tx.NUMBER), n) for n in names}
    return np.asarray(tx.compile_vector(spec.population_ast, {})(env, len(frame)), dtype=bool)


def fit_cutpoints(catalog: Catalog, frame: pd.DataFrame) -> dict[str, Any]:
    """Fit every declared cut point from the latest snapshot in `frame` (all rows if no event_timestamp),
    on the rows of its population, with `rank_edges` (equal-frequency bins that never split a tie).

    Returns the JSON-ready payload saved as `{data_dir}/tags/cutpoints.json`.
    """
    snapshot = None
    if "event_timestamp" in frame.columns and len(frame):
        snapshot = frame["event_timestamp"].max()
        frame = frame[frame["event_timestamp"] == snapshot]
    fitted = {}
    problems = []
    for spec in catalog.cutpoints.values():
        if spec.feature not in frame.columns:
            problems.append(f"cut points {spec.name!r}: the frame has no column {spec.feature!r}")
            continue
        values = pd.to_numeric(frame[spec.feature], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        values = values[population_mask(spec, frame)]
        values = values[np.isfinite(values)]
        if values.size == 0:
            who = f" among customers with {spec.population}" if spec.population else ""
            problems.append(f"cut points {spec.name!r}: no values of {spec.feature!r} to fit on{who}")
            continue
        fitted[spec.name] = {
            "feature": spec.feature,
            "bins": spec.bins,
            "population": spec.population,
            "method": "rank",
            "edges": rank_edges(values, spec.bins),
            "rows": int(values.size),
        }
    if problems:
        raise CatalogError("; ".join(problems))
    return {
        "catalog_version": catalog.version,
        "snapshot": None if snapshot is None else pd.Timestamp(snapshot).isoformat(),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cutpoints": fitted,
    }


# ---------------------------------------------------------------------------------- file edges (I/O)
def read_catalog_file(
    path: str | Path, *, known_names: Iterable[str], string_names: Iterable[str]
) -> Catalog:
    """Read and check the catalog YAML at `path` (CatalogError names the file and every problem)."""

    p = Path(path)
    if not p.is_file():
        raise CatalogError(f"tag catalog not found: {p}", hint="set tags.catalog in the config")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CatalogError(f"{p}:{at} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_catalog(raw or {}, known_names=known_names, string_names=string_names, source=str(p))


def write_cutpoints(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Save fitted cut points atomically (write a temp file, then rename: never a half-written file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(p)
    return p


def read_cutpoints(path: str | Path) -> dict[str, Any]:
    """Load fitted cut points; CatalogError with a hint when they were never fitted."""
    p = Path(path)
    if not p.is_file():
        raise CatalogError(f"no fitted cut points at {p}", hint="run `persona tags fit` (or retrain)")
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("cutpoints"), dict):
        raise CatalogError(f"{p}: expected an object with 'cutpoints'")
    return payload

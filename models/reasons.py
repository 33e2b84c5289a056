"""Reasons in words: a classifier's top contributions rendered as phrases a CRM user can read.

The reason catalog (`configs/reasons.yaml`) maps a feature and the direction of its effect to a phrase
with the customer's value, in English and Chinese:

    - feature: recency_days
      effect: raises          # raises | lowers | any (default any): the sign of the contribution
      if_value: "> 0"         # optional: <, <=, >, >=, = and a number, on the raw value
      en: "no order for {value:.0f} days"
      zh: "已 {value:.0f} 天未下单"

The first entry that matches (feature, effect, if_value) gives the phrase. Placeholders: `value`,
`pct` (value x 100), `pct_down` ((1 - value) x 100) and `pct_up` ((value - 1) x 100), for the ratio
features (e.g. spend in the last 90 days over the 90 days before). A feature with no entry falls back
to `<feature> = <value>`. `render_reasons` keeps the top reasons that RAISE the probability (what the
CRM field answers: why this customer is at risk / likely to convert), largest first.

Pure: the YAML is parsed by the caller (`artifacts.catalog.load_reason_catalog`).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import CatalogError

LANGUAGES = ("en", "zh")
EFFECTS = ("raises", "lowers", "any")
SEPARATOR = {"en": "; ", "zh": "；"}
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "=": operator.eq}
MISSING = "missing"  # `if_value: missing`: the customer has no value (no sign-up, never ordered)
UNKNOWN = {"en": "{feature}: not on record", "zh": "{feature}：无记录"}
_COND = re.compile(r"^\s*(<=|>=|<|>|=)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Phrase:
    feature: str
    effect: str
    condition: tuple[str, float] | None  # (op, bound), or ("missing", nan) for `if_value: missing`
    text: Mapping[str, str]  # language -> template

    def matches(self, contribution: float, value: Any) -> bool:
        if self.effect == "raises" and not contribution > 0:
            return False
        if self.effect == "lowers" and not contribution < 0:
            return False
        if self.condition is not None:
            if self.condition[0] == MISSING:
                return _is_missing(value)
            if not _is_number(value):
                return False
            op, bound = self.condition
            return bool(_OPS[op](float(value), bound))
        return True


@dataclass(frozen=True)
class ReasonCatalog:
    phrases: tuple[Phrase, ...]

    def phrase(self, feature: str, contribution: float, value: Any, language: str) -> str:
        """One reason in words (the fallback `feature = value` when no entry matches). A missing value
        never reaches a template that needs a number: without an `if_value: missing` entry it reads
        "<feature>: not on record", never "signed up ? days ago"."""
        for p in self.phrases:
            if p.feature == feature and p.matches(contribution, value):
                if _is_missing(value) and p.condition is None and "{" in p.text[language]:
                    break
                return _fill(p.text[language], value)
        if _is_missing(value):
            return UNKNOWN[language].format(feature=feature)
        return f"{feature} = {_show(value)}"


def parse_reason_catalog(
    raw: Any, *, known_names: set[str] | None = None, source: str = "reasons"
) -> ReasonCatalog:
    """Check a parsed YAML list of entries; CatalogError lists every problem (entry, field)."""
    entries = raw.get("reasons") if isinstance(raw, Mapping) else raw
    if not isinstance(entries, list):
        raise CatalogError(f"{source}: expected a list under 'reasons'")
    problems: list[str] = []
    phrases = []
    for i, entry in enumerate(entries, start=1):
        where = f"{source}: reasons entry {i}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        extra = sorted(set(entry) - {"feature", "effect", "if_value", *LANGUAGES})
        if extra:
            problems.append(f"{where}: unknown field(s) {', '.join(extra)}")
        feature = entry.get("feature")
        if not isinstance(feature, str) or not feature:
            problems.append(f"{where}: missing 'feature'")
            continue
        if known_names is not None and feature not in known_names:
            problems.append(f"{where}: unknown feature {feature!r}")
        effect = entry.get("effect", "any")
        if effect not in EFFECTS:
            problems.append(f"{where}: effect must be one of {', '.join(EFFECTS)}, got {effect!r}")
        condition = None
        if "if_value" in entry:
            m = _COND.match(str(entry["if_value"]))
            if str(entry["if_value"]).strip() == MISSING:
                condition = (MISSING, math.nan)
            elif not m:
                problems.append(
                    f"{where}: if_value must be like '< 1', '>= 30' or 'missing', got {entry['if_value']!r}"
                )
            else:
                condition = (m.group(1), float(m.group(2)))
        text = {}
        for lang in LANGUAGES:
            template = entry.get(lang)
            if not isinstance(template, str) or not template.strip():
                problems.append(f"{where} ({feature}): missing the {lang!r} phrase")
                continue
            try:
                _fill(template, 0.5)
            except (KeyError, ValueError, IndexError) as exc:
                problems.append(f"{where} ({feature}): bad placeholder in the {lang!r} phrase: {exc}")
                continue
            text[lang] = template
        if len(text) == len(LANGUAGES):
            phrases.append(Phrase(feature, str(effect), condition, text))
    if problems:
        raise CatalogError(f"the reason catalog has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return ReasonCatalog(tuple(phrases))


def render_reasons(
    catalog: ReasonCatalog,
    *,
    features: Sequence[str],
    contributions: np.ndarray,
    values: np.ndarray,
    top_k: int,
    language: str,
) -> np.ndarray:
    """Per row, the `top_k` reasons that raise the probability, in words, joined (None when none does).

    `contributions` and `values` are (rows, features) in `features` order (`values` raw, object)."""
    if language not in LANGUAGES:
        raise CatalogError(f"reasons: language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    out = np.full(len(contributions), None, dtype=object)
    if top_k <= 0 or len(contributions) == 0:
        return out
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :top_k]
    sep = SEPARATOR[language]
    for i in range(len(contributions)):
        parts = []
        for j in order[i]:
            c = float(contributions[i, j])
            if not c > 0:
                break
            parts.append(catalog.phrase(features[j], c, values[i, j], language))
        out[i] = sep.join(parts) if parts else None
    return out


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, str | bool):
        return False
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _fill(template: str, value: Any) -> str:
    if isinstance(value, str):  # a category (lead source, region): only a plain {value} makes sense
        try:
            return template.format(value=value, pct="?", pct_down="?", pct_up="?")
        except (ValueError, KeyError, IndexError):
            return re.sub(r"\{[^}]*\}", lambda _: value, template)
    if not _is_number(value):  # only templates without placeholders get here with a missing value
        return template
    v = float(value)
    return template.format(value=v, pct=v * 100, pct_down=(1 - v) * 100, pct_up=(v - 1) * 100)


def _show(value: Any) -> str:
    if not _is_number(value):
        return "unknown" if value is None else str(value)
    v = float(value)
    return str(int(v)) if v == int(v) else f"{v:.2f}"

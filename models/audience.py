"""A campaign's audience: a tag-language expression over the catalog's tags (pure).

`churn_risk = 'high' and persona_name != 'prospect'` reads the customers' current tag values (as the CRM
sees them); the same parser and null rules as the catalog (models/tag_expr.py). Flags read as true/false
(unset = false), number tags as numbers, tiers and categories as strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ValidationFailed
from models import tag_expr as tx

TYPE_OF_TAG = {"flag": tx.BOOL, "number": tx.NUMBER, "tier": tx.STRING, "category": tx.STRING}


@dataclass(frozen=True)
class Audience:
    text: str
    tags: tuple[str, ...]  # the tags the expression reads
    types: dict[str, str]
    fn: Any

    def select(self, values: pd.DataFrame) -> np.ndarray:
        """Mask of the rows of `values` (one column per tag in `tags`, strings as stored, None = unset)
        that belong to the audience."""
        env = {tag: _column(values.get(tag), self.types[tag], len(values)) for tag in self.tags}
        return np.asarray(self.fn(env, len(values)), dtype=bool)


def compile_audience(text: str, *, tag_types: Mapping[str, str], field: str = "audience") -> Audience:
    """Parse and type-check `text` against the tags `tag_types` (tag -> catalog type: flag | number |
    tier | category). Errors are one line naming `field`, e.g. `audience: unknown tag 'churn_rsk'
    (did you mean 'churn_risk'?) at character 1`."""
    names = {k: TYPE_OF_TAG[v] for k, v in tag_types.items()}
    try:
        node = tx.parse(text)
    except tx.ExprError as exc:
        raise ValidationFailed(f"{field}: {exc.message} at character {exc.pos + 1}") from None
    errors = tx.check_types(node, names=names, cutpoints={})
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"{field}: {first.message.replace('unknown name', 'unknown tag')} at character {first.pos + 1}"
        )
    if node.type != tx.BOOL:
        raise ValidationFailed(f"{field}: must be a condition (true or false), not {node.type}")
    if tx.qcut_calls(node):
        raise ValidationFailed(f"{field}: qcut() is for the catalog's own rules; compare tag values instead")
    used = tuple(dict.fromkeys(tx.names_in(node)))
    return Audience(text, used, {t: names[t] for t in used}, tx.compile_vector(node, {}))


def _column(values: pd.Series | None, t: str, n: int) -> np.ndarray:
    if values is None:
        values = pd.Series([None] * n, dtype=object)
    if t == tx.BOOL:
        return values.astype(object).eq("true").to_numpy(dtype=bool)
    if t == tx.NUMBER:
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    out = values.astype(object).to_numpy(dtype=object).copy()
    out[pd.isna(out)] = None
    return out

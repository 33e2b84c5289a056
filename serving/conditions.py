"""A rule's condition on a customer's current tags: the `where` of `segments.sync` and `triggers.rules`.

`where` is a tag expression in the catalog's language (`models/audience.py`, as campaign audiences:
`churn_risk = 'high' and value_tier in ('top', 'high')`) or, in short, a mapping tag -> value or list
of values that must all hold. Both read the tags as stored (strings, None = unset), so a segment and a
trigger with the same `where` select the same customers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import ConfigError, ValidationFailed
from models.audience import Audience, compile_audience

Where = Mapping[str, str | list[str]] | str


@dataclass(frozen=True)
class Condition:
    """A compiled `where`: an expression (`audience`) or the mapping tag -> accepted values."""

    audience: Audience | None = None
    accepted: dict[str, list[str]] = field(default_factory=dict)

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags the condition reads."""
        return self.audience.tags if self.audience is not None else tuple(self.accepted)

    def select(self, values: pd.DataFrame) -> np.ndarray:
        """Mask of the rows of `values` (one column per tag of `tags`, strings as stored, None = unset)
        that meet the condition; a missing column reads as unset."""
        if self.audience is not None:
            return self.audience.select(values)
        mask = np.ones(len(values), dtype=bool)
        for tag, wanted in self.accepted.items():
            column = values[tag] if tag in values else pd.Series([None] * len(values), index=values.index)
            mask &= column.astype(object).isin(wanted).to_numpy(dtype=bool)
        return mask


def compile_where(where: Where, *, tag_types: Mapping[str, str] | None, key: str) -> Condition:
    """`where` checked against the catalog's tags `tag_types` (tag -> flag | number | tier | category).
    Errors are one-line ConfigErrors naming `key` (e.g. `triggers.rules[vip].where: unknown tag
    'churn_rsk' (did you mean 'churn_risk'?) at character 1`). With `tag_types` None a mapping's tag
    names are not checked; an expression always needs the types."""
    if not isinstance(where, str):
        if tag_types is not None:
            unknown = sorted(set(where) - set(tag_types))
            if unknown:
                raise ConfigError(f"{key}: unknown tag {unknown[0]!r} (see `persona tags list`)")
        return Condition(accepted={t: v if isinstance(v, list) else [v] for t, v in where.items()})
    if tag_types is None:
        raise ValueError(f"{key}: an expression is checked against the catalog: pass its tag types")
    try:
        return Condition(audience=compile_audience(where, tag_types=tag_types, field=key))
    except ValidationFailed as exc:
        raise ConfigError(str(exc)) from None

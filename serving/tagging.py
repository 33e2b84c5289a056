"""Batch tagging glue: features + model outputs -> catalog tags -> tag store.

The engine itself (`models/tag_engine.py`) is pure. Loading the catalog and its cut points lives in
`training/tag_cutpoints.py` (they are fixed at training time); this module tags and opens the tag store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from artifacts.catalog import load_cutpoints
from configs.settings import Settings
from core.errors import ValidationFailed
from models.tag_engine import (
    Catalog,
    format_values,
)
from serving.outbox import make_state_engine
from serving.tag_store import TagStore


def tag_customers(
    settings: Settings,
    *,
    frame: pd.DataFrame,
    catalog: Catalog,
    cutpoints: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Tag every customer of `frame` (features + model outputs, column `customer_id`).

    Returns `customer_id` + one column per catalog tag, values as the CRM sees them (strings, None =
    unset). Rows whose `consent_profiling` is False (if that column is present) are never tagged.
    `cutpoints` defaults to the fitted ones in `settings.tags.cutpoints`.
    """
    if "customer_id" not in frame.columns:
        raise ValidationFailed("the frame to tag needs a 'customer_id' column")
    if "consent_profiling" in frame.columns:
        # False = withdrawn; missing (never asked) = allowed, as in the clean customers table
        frame = frame[~frame["consent_profiling"].eq(False).to_numpy()]
    dup = frame["customer_id"].duplicated()
    if dup.any():
        raise ValidationFailed(
            f"customer {frame['customer_id'][dup].iloc[0]} appears in {int(dup.sum()) + 1} rows of the frame "
            "to tag; pass one row per customer (one snapshot)"
        )
    if cutpoints is None:
        cutpoints = load_cutpoints(settings, catalog)
    tags = format_values(catalog.evaluate(frame, cutpoints), catalog)
    tags.insert(0, "customer_id", frame["customer_id"].astype(str).to_numpy())
    return tags.reset_index(drop=True)


def tag_value_counts(tags: pd.DataFrame, into: dict[str, Counter] | None = None) -> dict[str, Counter]:
    """Each tag's value counts (`unset` = no value), added to `into` (batch scoring counts chunk by chunk);
    values keep the order in which they first appear."""
    counts = into if into is not None else {}
    for col in tags.columns:
        if col == "customer_id":
            continue
        values = tags[col].astype(object).where(tags[col].notna(), "unset")
        counts.setdefault(col, Counter()).update(values.value_counts(sort=False).to_dict())
    return counts


def distribution_text(counts: dict[str, Counter], total: int, *, top: int = 12) -> str:
    """A readable table of each tag's value counts, most common first (ties ordered as pandas'
    `value_counts` orders them: its sort of the counts in order of first appearance)."""
    lines = []
    for col, counter in counts.items():
        ranked = pd.Series(list(counter.values()), index=pd.Index(list(counter), dtype=object), dtype="int64")
        ranked = ranked.sort_values(ascending=False)
        lines.append(f"{col}")
        for value, count in ranked.head(top).items():
            share = 100.0 * count / total if total else 0.0
            lines.append(f"  {str(value):<22} {count:>9,}  {share:5.1f}%")
        if len(ranked) > top:
            rest = int(ranked.iloc[top:].sum())
            lines.append(
                f"  {'(' + str(len(ranked) - top) + ' more)':<22} {rest:>9,}  {100.0 * rest / total:5.1f}%"
            )
    return "\n".join(lines)


def tag_distribution(tags: pd.DataFrame, *, top: int = 12) -> str:
    """A readable table of each tag's value counts (most common first; `unset` = no value)."""
    return distribution_text(tag_value_counts(tags), len(tags), top=top)


def open_tag_store(settings: Settings, catalog: Catalog | None = None) -> Any:
    """The TagStore of the state database (`settings.state_url`), its tables created if missing."""

    engine = make_state_engine(settings.url(settings.state_url))
    store = TagStore.from_catalog(engine, catalog) if catalog is not None else TagStore(engine)
    store.create_schema()
    return store

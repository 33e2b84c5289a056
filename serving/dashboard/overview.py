"""The overview page's numbers, in no language: who is profiled, how fresh the data is, personas with a
typical customer each, every tag's distribution, churn risk over time from the tag history, the CRM
delivery queue, campaign results. Built from `sources`; words are added when a page is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import Settings
from serving.dashboard import sources
from serving.dashboard.campaigns import CampaignResult, campaign_results

# What "typical" means for a persona: the median of these features over its customers.
PROFILE_FEATURES = ("recency_days", "frequency_365d", "monetary_365d")


@dataclass
class TagInfo:
    """What the page needs of a catalog tag: its type, allowed values in order, the model behind it."""

    key: str
    value_type: str
    values: tuple[str, ...] | None
    model: str | None
    description: str


@dataclass
class Overview:
    known: int = 0
    withdrawn: int = 0
    profiled: int = 0
    scored: int = 0
    as_of: pd.Timestamp | None = None
    snapshot: pd.Timestamp | None = None
    personas: pd.DataFrame = field(default_factory=pd.DataFrame)
    tags: list[TagInfo] = field(default_factory=list)
    tag_counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    churn_tag: str | None = None
    churn_history: pd.DataFrame = field(default_factory=pd.DataFrame)  # day, value, customers
    outbox: dict[str, int] = field(default_factory=dict)
    campaigns: list[CampaignResult] = field(default_factory=list)

    @property
    def behind_days(self) -> float | None:
        """How far the feature snapshot lags the data's clock."""
        if self.as_of is None or self.snapshot is None:
            return None
        return max((self.as_of - self.snapshot).total_seconds() / 86400.0, 0.0)

    def counts_of(self, tag: str) -> pd.DataFrame:
        """(value, customers) of one tag, in the catalog's value order where it declares one; a tag
        compacted by `compact_counts` (bins, or the top values and the rest) keeps its stored order."""
        rows = self.tag_counts[self.tag_counts["tag"] == tag]
        part = rows[["value", "customers"]]
        if "kind" in rows.columns and rows["kind"].isin(["bin", "other"]).any():
            return rows[["value", "customers", "kind"]].reset_index(drop=True)
        info = next((t for t in self.tags if t.key == tag), None)
        if info is not None and info.values:
            order = {v: i for i, v in enumerate(info.values)}
            part = part.assign(_o=part["value"].map(lambda v: order.get(v, len(order)))).sort_values("_o")
            return part.drop(columns="_o").reset_index(drop=True)
        if info is not None and info.value_type == "number":
            numeric = pd.to_numeric(part["value"], errors="coerce")
            return part.assign(_o=numeric).sort_values("_o").drop(columns="_o").reset_index(drop=True)
        return part.sort_values("customers", ascending=False).reset_index(drop=True)


def catalog_tags(settings: Settings) -> list[TagInfo]:
    from artifacts.catalog import load_catalog

    catalog = load_catalog(settings)
    return [TagInfo(t.key, t.value_type, t.values, t.model, t.description) for t in catalog.tags]


def find_tag(tags: list[TagInfo], *, model_suffix: str) -> str | None:
    """The tier tag of a model (e.g. the churn model's risk tier), found in the catalog, not hard-coded."""
    for tag in tags:
        if tag.value_type == "tier" and tag.model and tag.model.endswith(model_suffix):
            return tag.key
    return None


def persona_profiles(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Per persona: customers, share, and the median of each profile feature (NaN where none bought)."""
    if scores.empty or "persona" not in scores.columns:
        return pd.DataFrame(columns=["persona", "customers", "share", *PROFILE_FEATURES])
    wanted = ["customer_id", *[c for c in PROFILE_FEATURES if c in features.columns]]
    joined = scores[["customer_id", "persona"]].merge(features[wanted], on="customer_id", how="left")
    joined = joined[joined["persona"].notna()]
    grouped = joined.groupby("persona", sort=False)
    out = grouped.size().rename("customers").to_frame()
    for column in PROFILE_FEATURES:
        out[column] = grouped[column].median() if column in joined.columns else np.nan
    out["share"] = out["customers"] / max(int(out["customers"].sum()), 1)
    return out.reset_index().sort_values("customers", ascending=False).reset_index(drop=True)


# A distribution chart shows at most this many bars: a number tag with more distinct values (a predicted
# spend) becomes a histogram, a text tag (reasons in words) its most common values and one bar for the rest.
MAX_BARS = 15


def _bin_edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Equal-width bins from the smallest value to the 99th percentile, and one open bin above it when
    the tail goes further (a long tail would otherwise put nearly everyone in the first bin)."""
    low, top, high = float(values.min()), float(np.quantile(values, 0.99)), float(values.max())
    positive = values[values > 0]
    if low >= 0 and len(positive) and high > 20 * float(np.median(positive)):
        # money-like and long-tailed: 1-2-5 steps (0-100, 100-200, 200-500, ...) read better than equal
        # widths that put nearly everyone in the first bar
        start = int(np.floor(np.log10(float(np.quantile(positive, 0.05)))))
        steps = [m * 10.0**e for e in range(start, int(np.ceil(np.log10(high))) + 1) for m in (1, 2, 5)]
        nice = np.array([low, *[x for x in steps if low < x < high], high])
        if len(nice) - 1 <= MAX_BARS:
            return nice, False
    if top <= low:
        top = high
    edges = np.linspace(low, top, MAX_BARS)
    return (np.append(edges, high), True) if high > top else (edges, False)


def _edge(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 or abs(x - round(x)) < 0.005 else f"{x:,.2f}"


def _range_words(low: float, high: float, *, last: bool) -> str:
    return f"≥ {_edge(low)}" if last else f"{_edge(low)} - {_edge(high)}"


def compact_counts(counts: pd.DataFrame, tags: list[TagInfo]) -> pd.DataFrame:
    """`counts` (tag, value, customers) with every tag at MAX_BARS values or fewer, and a `kind` column:
    `value` (as stored), `bin` (a range of a number tag, in order) or `other` (value = how many values the
    row stands for). Unset (None) stays its own row."""
    if counts.empty:
        return counts.assign(kind=pd.Series(dtype=object))
    types = {t.key: t.value_type for t in tags}
    parts = []
    for tag, part in counts.groupby("tag", sort=False):
        part = part.assign(kind="value")
        known = part[part["value"].notna()]
        if len(known) <= MAX_BARS or types.get(tag) in ("flag", "tier"):
            parts.append(part)
            continue
        unset = part[part["value"].isna()]
        numbers = pd.to_numeric(known["value"], errors="coerce")
        if types.get(tag) == "number" and numbers.notna().all():
            values = numbers.to_numpy(dtype=float)
            edges, tail = _bin_edges(np.repeat(values, known["customers"].to_numpy()))
            bins = len(edges) - 1
            which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
            sums = np.bincount(which, weights=known["customers"].to_numpy(), minlength=bins)
            words = [_range_words(edges[i], edges[i + 1], last=tail and i == bins - 1) for i in range(bins)]
            binned = pd.DataFrame({"tag": tag, "value": words, "customers": sums.astype(int), "kind": "bin"})
            parts.append(pd.concat([binned, unset], ignore_index=True))
            continue
        ranked = known.sort_values("customers", ascending=False)
        top, rest = ranked.head(MAX_BARS - 1), ranked.iloc[MAX_BARS - 1 :]
        other = pd.DataFrame(
            {
                "tag": [tag],
                "value": [str(len(rest))],
                "customers": [int(rest["customers"].sum())],
                "kind": ["other"],
            }
        )
        parts.append(pd.concat([top, other, unset], ignore_index=True))
    return pd.concat(parts, ignore_index=True)


def distribution_over_time(moves: pd.DataFrame) -> pd.DataFrame:
    """Customers per (day, value) after each day's changes: every change moves one customer from its old
    value to its new one, so the running sum of (+1 new, -1 old) is the distribution at the end of a day."""
    if moves.empty:
        return pd.DataFrame(columns=["day", "value", "customers"])
    plus = moves[moves["new_value"].notna()][["day", "new_value", "n"]].rename(columns={"new_value": "value"})
    minus = moves[moves["old_value"].notna()][["day", "old_value", "n"]].rename(
        columns={"old_value": "value"}
    )
    minus = minus.assign(n=-minus["n"])
    delta = pd.concat([plus, minus]).groupby(["day", "value"])["n"].sum().unstack(fill_value=0).sort_index()
    running = delta.cumsum().clip(lower=0)
    return running.stack().rename("customers").reset_index()


def build_overview(settings: Settings, *, tags: list[TagInfo], engine: Any) -> Overview:
    """Every number of the overview page."""
    consent = sources.consent_counts(settings)
    features = sources.snapshot_frame(settings, columns=list(PROFILE_FEATURES))
    scores = sources.latest_scores(settings)
    if not scores.empty:  # a score file may predate a consent withdrawal: those customers are not shown
        withdrawn = sources.withdrawn_ids(settings)
        scores = scores[~scores["customer_id"].astype(str).isin(withdrawn)]
    snapshot = features["event_timestamp"].max() if len(features) else None
    churn_tag = find_tag(tags, model_suffix="-churn")
    return Overview(
        known=consent["known"],
        withdrawn=consent["withdrawn"],
        profiled=int(features["customer_id"].nunique()) if len(features) else 0,
        scored=len(scores),
        as_of=sources.data_as_of(settings),
        snapshot=None if snapshot is None or pd.isna(snapshot) else pd.Timestamp(snapshot),
        personas=persona_profiles(scores, features),
        tags=tags,
        tag_counts=compact_counts(sources.tag_value_counts(engine), tags),
        churn_tag=churn_tag,
        churn_history=distribution_over_time(sources.tag_moves(engine, churn_tag))
        if churn_tag
        else pd.DataFrame(),
        outbox=sources.outbox_counts(engine),
        campaigns=campaign_results(settings),
    )

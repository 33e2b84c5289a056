"""Campaign state as both sides read it: the state tables (`campaigns`, `campaign_assignments`), a stored
campaign's spec and assignments, its outcomes from the clean orders and events, and the finished
campaigns an uplift model learns from. Serving writes these tables (serving/campaigns.py); training reads
them (training/uplift.py).

"Now" is the data's clock: the `as_of` ingest ran with (`clean/ingest_report.json`), never the wall clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from configs.campaign import CampaignSpec, parse_campaign
from core.errors import ValidationFailed

if TYPE_CHECKING:
    from configs.settings import Settings

metadata = sa.MetaData()
campaigns_table = sa.Table(
    "campaigns",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),  # the YAML as validated, JSON
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("audience_size", sa.Integer, nullable=False),
)
assignments_table = sa.Table(
    "campaign_assignments",
    metadata,
    sa.Column("campaign", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    # Breakdown tags as they were at assignment: pre-treatment, so the treatment cannot move them.
    sa.Column("tags", sa.Text, nullable=False),
)


def read_engine(settings: Settings) -> Engine | None:
    """An engine on the state database for reading, or None when it was never created (a SQLite file
    that does not exist yet: no campaign has been stored)."""
    url = sa.make_url(settings.url(settings.state_url))
    on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if on_disk and not Path(url.database).is_file():
        return None
    return sa.create_engine(url)


def _load_spec(row: Any) -> CampaignSpec:
    return parse_campaign(json.loads(row.spec), origin=f"campaign {row.name}")


def stored_spec(engine: Engine, name: str) -> CampaignSpec:
    with engine.connect() as conn:
        row = conn.execute(sa.select(campaigns_table).where(campaigns_table.c.name == name)).first()
    if row is None:
        raise ValidationFailed(f"no campaign {name!r}; create it first: persona campaign create {name}")
    return _load_spec(row)


def stored_specs(engine: Engine) -> list[CampaignSpec]:
    """Every stored campaign (none when the state database has no campaign table yet)."""
    if not sa.inspect(engine).has_table(campaigns_table.name):
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.select(campaigns_table).order_by(campaigns_table.c.name)).all()
    return [_load_spec(r) for r in rows]


def assignments(engine: Engine, name: str) -> pd.DataFrame:
    """`customer_id`, `arm` and the breakdown tags at assignment of every customer assigned to `name`."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                assignments_table.c.customer_id, assignments_table.c.arm, assignments_table.c.tags
            ).where(assignments_table.c.campaign == name)
        ).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "arm", "tags"])
    tags = pd.DataFrame([json.loads(t) for t in frame["tags"]], index=frame.index)
    return pd.concat([frame.drop(columns="tags"), tags], axis=1)


def ts(d: Any) -> pd.Timestamp:
    """A date or timestamp as a UTC timestamp (a date is its midnight UTC)."""
    stamp = pd.Timestamp(d)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp


def outcome_window(spec: CampaignSpec) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, start + window_days): where a campaign's outcome is read."""
    start = ts(spec.start)
    return start, start + timedelta(days=spec.outcome.window_days)


def data_as_of(settings: Settings) -> pd.Timestamp:
    """The data's clock: the `as_of` `persona ingest` recorded (`features.clock`, the one source)."""
    from features.clock import clean_as_of

    return clean_as_of(settings)


def outcome_values(
    settings: Settings, spec: CampaignSpec, ids: list[str], *, start: pd.Timestamp, end: pd.Timestamp
) -> pd.Series:
    """The outcome of each customer in [start, end), indexed by customer id. Repurchase keeps only
    customers who had ordered before `start`."""
    from features.ingest import load_clean

    outcome = spec.outcome
    index = pd.Index(ids, name="customer_id")
    if outcome.kind == "event":
        events = load_clean(settings, "events")
        if events is None:
            raise ValidationFailed(f"campaign {spec.name!r}: outcome.event_type needs the events source")
        hit = events[
            (events.event_type == outcome.event_type) & (events.event_ts >= start) & (events.event_ts < end)
        ]
        return pd.Series(index.isin(hit.customer_id).astype(float), index=index)
    orders = load_clean(settings, "orders")
    valid = orders[~orders.is_cancelled.astype(bool)]
    window = valid[(valid.order_ts >= start) & (valid.order_ts < end)]
    if outcome.kind == "spend":
        kept = window[~window.is_returned.astype(bool)]
        return kept.groupby("customer_id").amount.sum().reindex(index, fill_value=0.0).astype(float)
    values = pd.Series(index.isin(window.customer_id).astype(float), index=index)
    if outcome.kind == "repurchase":
        before = set(valid.loc[valid.order_ts < start, "customer_id"])
        values = values[values.index.isin(before)]
    return values


@dataclass
class FinishedCampaign:
    """A campaign Persona ran whose outcome window is closed by the data's clock: one row per assigned
    customer with `customer_id`, `arm`, `treated` (any arm but control) and the 0/1 `outcome`."""

    spec: CampaignSpec
    frame: pd.DataFrame


def finished_campaigns(
    settings: Settings, *, engine: Engine | None = None
) -> tuple[list[FinishedCampaign], list[str]]:
    """The campaigns an uplift model may learn from (run by Persona, 0/1 outcome, window closed by the
    data's clock, assigned), and one line per stored campaign left out saying why."""
    engine = engine or read_engine(settings)
    specs = stored_specs(engine) if engine is not None else []
    if not specs:
        return [], []
    as_of = data_as_of(settings)
    found, left_out = [], []
    for spec in specs:
        start, end = outcome_window(spec)
        if not spec.outcome.binary:
            left_out.append(f"{spec.name}: outcome {spec.outcome.kind} is not 0/1")
            continue
        if as_of < end:
            left_out.append(f"{spec.name}: window open until {end.date()} (data as of {as_of.date()})")
            continue
        frame = assignments(engine, spec.name)[["customer_id", "arm"]]
        if frame.empty:
            left_out.append(f"{spec.name}: no assignments")
            continue
        values = outcome_values(settings, spec, frame.customer_id.tolist(), start=start, end=end)
        frame = frame[frame.customer_id.isin(values.index)].copy()
        frame["treated"] = (frame.arm != spec.control).astype(int)
        frame["outcome"] = values.reindex(frame.customer_id).to_numpy().astype(int)
        found.append(FinishedCampaign(spec, frame.reset_index(drop=True)))
    return found, left_out

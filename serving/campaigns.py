"""Campaigns Persona runs: create (audience, power), assign (hash, stored, tagged through the outbox),
measure (outcomes from the clean orders and events after the start) and report.

State lives in the state database beside the tags and the outbox (`campaigns`, `campaign_assignments`),
so an assignment and its CRM tag change commit in one transaction. "Now" is the data's as-of (the latest
order or event in the clean tables), never the wall clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from configs.campaign import CampaignSpec, CampaignSpecError, parse_campaign
from configs.settings import Settings
from core.errors import ValidationFailed
from models.assignment import assign_arms
from models.audience import compile_audience
from models.campaign_report import build_report
from models.experiments import minimum_detectable_effect, power_of

# Tags a campaign may read besides the catalog's: the uplift model's tier (written by `campaign uplift`).
EXTRA_TAGS = {"uplift_tier": "category"}

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


def state_engine(settings: Settings) -> Engine:
    from serving.outbox import Outbox, make_state_engine

    engine = make_state_engine(settings.url(settings.state_url))
    metadata.create_all(engine, checkfirst=True)
    Outbox(engine).create_schema()
    return engine


def tag_types(catalog: Any) -> dict[str, str]:
    """Every tag an audience may read: the catalog's, plus the uplift tier."""
    return {t.key: t.value_type for t in catalog.tags} | EXTRA_TAGS


def check_spec(spec: CampaignSpec, catalog: Any) -> None:
    """What the YAML alone cannot know: audience tags exist, the event type is one the data has."""
    from features.vocabulary import EVENT_TYPES

    if spec.audience is not None:
        compile_audience(spec.audience, tag_types=tag_types(catalog))
    if spec.outcome and spec.outcome.kind == "event" and spec.outcome.event_type not in EVENT_TYPES:
        raise CampaignSpecError(
            f"outcome.event_type: {spec.outcome.event_type!r} is not an event type (one of {', '.join(EVENT_TYPES)})",
            field="outcome.event_type",
        )
    for tag in spec.breakdown_by:
        if tag not in tag_types(catalog):
            raise CampaignSpecError(f"breakdown_by: unknown tag {tag!r}", field="breakdown_by")


def current_tags(engine: Engine, tags: list[str], *, ids: list[str] | None = None) -> pd.DataFrame:
    """`customer_id` + one column per tag (stored strings, None = unset) for every customer with any
    current tag (or for `ids`)."""
    from serving.tag_store import tag_current

    t = tag_current
    with engine.connect() as conn:
        everyone = pd.DataFrame(
            conn.execute(sa.select(t.c.customer_id).distinct()).all(), columns=["customer_id"]
        )
        rows = pd.DataFrame(
            conn.execute(sa.select(t.c.customer_id, t.c.tag, t.c.value).where(t.c.tag.in_(tags))).all(),
            columns=["customer_id", "tag", "value"],
        )
    base = pd.DataFrame({"customer_id": ids}) if ids is not None else everyone
    wide = rows.pivot(index="customer_id", columns="tag", values="value") if len(rows) else pd.DataFrame()
    out = base.merge(wide, left_on="customer_id", right_index=True, how="left")
    for tag in tags:
        if tag not in out:
            out[tag] = None
    return out[["customer_id", *tags]].astype(object).where(out[["customer_id", *tags]].notna(), None)


def data_as_of(settings: Settings) -> pd.Timestamp:
    """The data's clock: the latest order or event in the clean tables."""
    from features.ingest import load_clean

    stamps = [load_clean(settings, "orders")["order_ts"].max()]
    events = load_clean(settings, "events")
    if events is not None and len(events):
        stamps.append(events["event_ts"].max())
    return max(stamps)


@dataclass
class Created:
    spec: CampaignSpec
    audience_size: int
    withdrawn_excluded: int
    baseline_mean: float
    baseline_sd: float
    arms: dict[str, int]
    mde: float
    power: float | None
    as_of: pd.Timestamp


def _load_spec(row: Any) -> CampaignSpec:
    return parse_campaign(json.loads(row.spec), origin=f"campaign {row.name}")


def _audience(settings: Settings, spec: CampaignSpec, engine: Engine, catalog: Any) -> tuple[list[str], int]:
    from features.ingest import withdrawn_customer_ids

    audience = compile_audience(spec.audience or "true", tag_types=tag_types(catalog))
    values = current_tags(engine, list(audience.tags))
    ids = values.loc[audience.select(values), "customer_id"].astype(str)
    withdrawn = withdrawn_customer_ids(settings)
    kept = [i for i in ids if i not in withdrawn]
    return sorted(kept), len(ids) - len(kept)


def create_campaign(settings: Settings, spec: CampaignSpec, *, catalog: Any) -> Created:
    """Validate against the catalog, size the audience, estimate power from the audience's own outcome
    in the window before the start, and store the campaign (re-creating an identical one is a no-op;
    a different spec under the same name is refused)."""
    check_spec(spec, catalog)
    engine = state_engine(settings)
    ids, withdrawn = _audience(settings, spec, engine, catalog)
    as_of = data_as_of(settings)
    start = _ts(spec.start)
    pre_start = min(start, as_of) - timedelta(days=spec.outcome.window_days)
    pre = outcome_values(
        settings, spec, ids, start=pre_start, end=pre_start + timedelta(days=spec.outcome.window_days)
    )
    mean = float(pre.mean()) if len(pre) else 0.0
    sd = float(pre.std(ddof=1)) if len(pre) > 1 else 0.0
    if spec.outcome.binary:
        sd = float(np.sqrt(mean * (1 - mean)))
    expected = {a.name: int(round(len(ids) * a.share)) for a in spec.arms}
    n_c = max(expected[spec.control], 1)
    n_t = max(min(n for a, n in expected.items() if a != spec.control), 1)
    mde = minimum_detectable_effect(sd=sd, n_treatment=n_t, n_control=n_c, alpha=spec.alpha, power=spec.power)
    power = (
        power_of(effect=spec.minimum_effect, sd=sd, n_treatment=n_t, n_control=n_c, alpha=spec.alpha)
        if spec.minimum_effect
        else None
    )
    text = spec.model_dump_json()
    with engine.begin() as conn:
        row = conn.execute(sa.select(campaigns_table).where(campaigns_table.c.name == spec.name)).first()
        if row is not None and json.loads(row.spec) != json.loads(text):
            raise ValidationFailed(
                f"campaign {spec.name!r} already exists with a different definition; pick a new name"
            )
        if row is None:
            conn.execute(
                sa.insert(campaigns_table).values(
                    name=spec.name, spec=text, created_at=datetime.now(UTC), audience_size=len(ids)
                )
            )
    return Created(spec, len(ids), withdrawn, mean, sd, expected, mde, power, as_of)


def stored_spec(engine: Engine, name: str) -> CampaignSpec:
    with engine.connect() as conn:
        row = conn.execute(sa.select(campaigns_table).where(campaigns_table.c.name == name)).first()
    if row is None:
        raise ValidationFailed(f"no campaign {name!r}; create it first: persona campaign create {name}")
    return _load_spec(row)


def assign_campaign(settings: Settings, name: str, *, catalog: Any) -> dict[str, Any]:
    """Assign the current audience (consent-withdrawn customers never); customers already assigned keep
    their arm. New assignments and their CRM tag `persona_campaign_<name>` commit in one transaction with
    the outbox entries. Returns counts."""
    from features.ingest import withdrawn_customer_ids
    from serving.outbox import Outbox
    from serving.tag_store import TagStore

    engine = state_engine(settings)
    spec = stored_spec(engine, name)
    ids, _ = _audience(settings, spec, engine, catalog)
    withdrawn = withdrawn_customer_ids(settings)
    with engine.connect() as conn:
        done = {
            r.customer_id
            for r in conn.execute(
                sa.select(assignments_table.c.customer_id).where(assignments_table.c.campaign == name)
            )
        }
    new = [i for i in ids if i not in done and i not in withdrawn]
    arms = assign_arms(new, salt=spec.salt, campaign=spec.name, arms=[(a.name, a.share) for a in spec.arms])
    breakdown = [t for t in spec.breakdown_by if t in tag_types(catalog)]
    snapshot = current_tags(engine, breakdown, ids=new) if new else pd.DataFrame(columns=["customer_id"])
    now = datetime.now(UTC)
    store = TagStore(engine, crm_fields={spec.tag_key: spec.tag_key})
    changes = []
    with engine.begin() as conn:
        if new:
            records = snapshot[breakdown].to_dict("records") if breakdown else [{}] * len(new)
            conn.execute(
                sa.insert(assignments_table),
                [
                    {
                        "campaign": name,
                        "customer_id": c,
                        "arm": str(a),
                        "assigned_at": now,
                        "tags": json.dumps(r),
                    }
                    for c, a, r in zip(new, arms, records, strict=True)
                ],
            )
            changes = store.apply(
                conn,
                tags=pd.DataFrame({"customer_id": new, spec.tag_key: arms}),
                produced_by={spec.tag_key: f"campaign:{name}"},
                inputs=None,
                at=now,
            )
            Outbox(engine).enqueue(conn, changes)
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.select(assignments_table.c.arm, sa.func.count())
                .where(assignments_table.c.campaign == name)
                .group_by(assignments_table.c.arm)
            ).all()
        )
    return {
        "campaign": name,
        "new": len(new),
        "queued": len(changes),
        "by_arm": counts,
        "total": sum(counts.values()),
    }


def assignments(engine: Engine, name: str) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                assignments_table.c.customer_id, assignments_table.c.arm, assignments_table.c.tags
            ).where(assignments_table.c.campaign == name)
        ).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "arm", "tags"])
    tags = pd.DataFrame([json.loads(t) for t in frame["tags"]], index=frame.index)
    return pd.concat([frame.drop(columns="tags"), tags], axis=1)


def _ts(d: Any) -> pd.Timestamp:
    return pd.Timestamp(d).tz_localize(UTC) if pd.Timestamp(d).tzinfo is None else pd.Timestamp(d)


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


def campaign_report(settings: Settings, name: str) -> dict[str, Any]:
    """The campaign's report as data (what the CLI prints, the API returns and the dashboard shows)."""
    engine = state_engine(settings)
    spec = stored_spec(engine, name)
    as_of = data_as_of(settings)
    start = _ts(spec.start)
    if as_of < start:
        raise ValidationFailed(
            f"campaign {name!r}: start: {spec.start} is after the data's as-of {as_of.date()}; "
            "nothing to evaluate before the campaign starts"
        )
    frame = assignments(engine, name)
    if frame.empty:
        raise ValidationFailed(f"campaign {name!r} has no assignments yet: persona campaign assign {name}")
    window_end = start + timedelta(days=spec.outcome.window_days)
    observed_to = min(window_end, as_of + timedelta(microseconds=1))
    values = outcome_values(settings, spec, frame.customer_id.tolist(), start=start, end=observed_to)
    frame = frame[frame.customer_id.isin(values.index)].copy()
    label = spec.outcome.label
    frame[label] = values.reindex(frame.customer_id).to_numpy()
    status = {
        "as_of": as_of.isoformat(),
        "window_end": window_end.isoformat(),
        "complete": bool(as_of >= window_end),
        "days_observed": max(0, (min(as_of, window_end) - start).days),
    }
    report = build_report(spec, frame, outcomes={label: spec.outcome.binary}, status=status)
    if not status["complete"]:
        report["warnings"].insert(
            0,
            f"outcome window still open: {status['days_observed']} of {spec.outcome.window_days} days observed "
            f"(data as of {as_of.date()})",
        )
    return report

"""Campaigns Persona runs: create (audience, power), assign (hash, stored, tagged through the outbox),
measure (outcomes from the clean orders and events after the start) and report.

State lives in the state database beside the tags and the outbox (`campaigns`, `campaign_assignments`),
so an assignment and its CRM tag change commit in one transaction (the tables and the read side are in
artifacts/campaigns.py). "Now" is the data's as-of, never the wall clock.
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

from artifacts.campaigns import (
    assignments,
    assignments_table,
    campaigns_table,
    data_as_of,
    metadata,
    outcome_values,
    stored_spec,
    ts,
)
from configs.campaign import CampaignSpec, CampaignSpecError
from configs.settings import Settings
from core.errors import ValidationFailed
from features.ingest import withdrawn_customer_ids
from features.vocabulary import EVENT_TYPES
from models.assignment import assign_arms
from models.audience import compile_audience
from models.campaign_report import build_report
from models.experiments import minimum_detectable_effect, power_of
from serving.outbox import Outbox, make_state_engine
from serving.tag_store import TagStore, tag_current


def state_engine(settings: Settings) -> Engine:
    engine = make_state_engine(settings.url(settings.state_url))
    metadata.create_all(engine, checkfirst=True)
    Outbox(engine).create_schema()
    return engine


def tag_types(catalog: Any) -> dict[str, str]:
    """Every tag an audience may read: the catalog's (the uplift model's `uplift_tier` among them)."""
    return {t.key: t.value_type for t in catalog.tags}


def check_spec(spec: CampaignSpec, catalog: Any) -> None:
    """What the YAML alone cannot know: audience tags exist, the event type is one the data has."""

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


def _audience(settings: Settings, spec: CampaignSpec, engine: Engine, catalog: Any) -> tuple[list[str], int]:
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
    start = ts(spec.start)
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


def assign_campaign(settings: Settings, name: str, *, catalog: Any) -> dict[str, Any]:
    """Assign the current audience (consent-withdrawn customers never); customers already assigned keep
    their arm. New assignments and their CRM tag `persona_campaign_<name>` commit in one transaction with
    the outbox entries. Returns counts."""

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


def campaign_report(settings: Settings, name: str) -> dict[str, Any]:
    """The campaign's report as data (what the CLI prints, the API returns and the dashboard shows)."""
    engine = state_engine(settings)
    spec = stored_spec(engine, name)
    as_of = data_as_of(settings)
    start = ts(spec.start)
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

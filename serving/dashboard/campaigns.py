"""Campaigns as the dashboard shows them, in no language: per stored campaign (`persona campaign create`)
its arms and how many customers each holds, and its report (`serving.campaigns.campaign_report`: effect
per arm against control with its interval, breakdowns by the tags recorded at assignment, uplift tier
among them where the campaign recorded it); per customer the campaigns they were assigned to.

Reads the state tables `campaigns` and `campaign_assignments` (artifacts/campaigns.py) and, for the
outcomes, the clean orders and events through the report; writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from configs.settings import Settings
from core.errors import PersonaError


@dataclass
class CampaignResult:
    name: str
    description: str
    start: str | None
    end: str | None
    audience: str | None
    control: str
    arms: list[str]
    assigned: dict[str, int] = field(default_factory=dict)  # arm -> customers assigned
    report: dict[str, Any] | None = None  # models.campaign_report.build_report's dict
    not_evaluable: str | None = None  # why there is no report yet (before the start, no assignments)


def _specs(engine: sa.Engine) -> list[Any]:
    from artifacts.campaigns import stored_specs

    return stored_specs(engine)


def arm_sizes(engine: sa.Engine, name: str) -> dict[str, int]:
    from artifacts.campaigns import assignments_table as a

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.arm, sa.func.count()).where(a.c.campaign == name).group_by(a.c.arm)
        ).all()
    return {str(arm): int(n) for arm, n in rows}


def campaign_results(settings: Settings) -> list[CampaignResult]:
    """Every stored campaign with its arm sizes and, where it can be evaluated, its report."""
    from artifacts.campaigns import read_engine

    engine = read_engine(settings)
    if engine is None:
        return []
    out = []
    for spec in _specs(engine):
        result = CampaignResult(
            name=spec.name,
            description=spec.description or "",
            start=spec.start.isoformat() if spec.start else None,
            end=spec.end.isoformat() if spec.end else None,
            audience=spec.audience,
            control=spec.control,
            arms=[a.name for a in spec.arms],
            assigned=arm_sizes(engine, spec.name),
        )
        try:
            from serving.campaigns import campaign_report

            result.report = campaign_report(settings, spec.name)
        except PersonaError as exc:  # not evaluable yet: the page says why, beside the arm sizes
            result.not_evaluable = str(exc)
        out.append(result)
    return out


@dataclass
class Assignment:
    campaign: str
    description: str
    arm: str
    control: bool
    assigned_at: Any
    start: str | None
    end: str | None


def customer_campaigns(engine: sa.Engine | None, customer_id: str) -> list[Assignment]:
    """The campaigns one customer was assigned to, one primary-key lookup per stored campaign."""
    if engine is None or not sa.inspect(engine).has_table("campaign_assignments"):
        return []
    from artifacts.campaigns import assignments_table as a

    specs = _specs(engine)
    out = []
    with engine.connect() as conn:
        for spec in specs:
            row = conn.execute(
                sa.select(a.c.arm, a.c.assigned_at).where(
                    a.c.campaign == spec.name, a.c.customer_id == customer_id
                )
            ).first()
            if row is None:
                continue
            out.append(
                Assignment(
                    campaign=spec.name,
                    description=spec.description or "",
                    arm=str(row.arm),
                    control=str(row.arm) == spec.control,
                    assigned_at=row.assigned_at,
                    start=spec.start.isoformat() if spec.start else None,
                    end=spec.end.isoformat() if spec.end else None,
                )
            )
    return out

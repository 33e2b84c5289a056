"""A campaign's report as data (pure): every outcome evaluated per arm against control, with breakdowns.

The same dict feeds `persona campaign report` (terminal, HTML), `GET /v1/campaigns/NAME` and the
dashboard; nothing here reads files or databases.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from configs.campaign import CampaignSpec
from models.experiments import evaluate_outcome

ARM = "arm"


def build_report(
    spec: CampaignSpec,
    frame: pd.DataFrame,
    *,
    outcomes: Mapping[str, bool],
    status: Mapping[str, object] | None = None,
    seed: int = 0,
) -> dict:
    """`frame`: one row per assigned customer with `arm`, each outcome column named in `outcomes`
    (name -> binary?) and any breakdown columns. The first outcome is the primary one; the campaign's
    `minimum_effect` applies to it. Breakdown columns the frame lacks are listed, not invented."""
    present = [c for c in spec.breakdown_by if c in frame.columns]
    missing = [c for c in spec.breakdown_by if c not in frame.columns]
    results = []
    for i, (name, binary) in enumerate(outcomes.items()):
        results.append(
            evaluate_outcome(
                frame,
                arm_column=ARM,
                outcome=name,
                binary=binary,
                control=spec.control,
                shares=spec.shares,
                breakdown_by=present,
                minimum_effect=spec.minimum_effect if i == 0 else None,
                power=spec.power,
                alpha=spec.alpha,
                seed=seed,
            )
        )
    warnings = list(dict.fromkeys(w for r in results for w in r["warnings"]))
    if missing:
        warnings.append(f"no breakdown by {missing}: those tags are not available for this campaign")
    return {
        "campaign": spec.name,
        "description": spec.description,
        "arms": [{"name": a.name, "share": a.share, "control": a.control} for a in spec.arms],
        "start": spec.start.isoformat() if spec.start else None,
        "end": spec.end.isoformat() if spec.end else None,
        "audience": spec.audience,
        "minimum_effect": spec.minimum_effect,
        "n": len(frame),
        "status": dict(status or {}),
        "outcomes": results,
        "warnings": warnings,
    }

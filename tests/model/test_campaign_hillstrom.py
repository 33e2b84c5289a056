"""Hillstrom's real randomised e-mail test, imported through `configs/campaigns/hillstrom.yaml` alone,
reproduces the effects measured independently (issue 14): a property of the data and the method."""

from __future__ import annotations

import pytest

from configs.campaign import load_campaign
from features.campaign_source import read_campaign_source
from features.shared_data import shared_data_dir
from models.campaign_report import build_report

pytestmark = pytest.mark.skipif(
    not (shared_data_dir() / "hillstrom").is_dir(),
    reason=f"public datasets not found at {shared_data_dir()} (set PERSONA_SHARED_DATA to run these)",
)


@pytest.fixture(scope="module")
def report() -> dict:
    spec = load_campaign("hillstrom")
    frame = read_campaign_source(spec)
    outcomes = {name: o.type == "rate" for name, o in spec.source.outcomes.items()}
    return build_report(spec, frame, outcomes=outcomes)


def _effect(report: dict, outcome: str, arm: str) -> dict:
    result = next(r for r in report["outcomes"] if r["outcome"] == outcome)
    return next(e for e in result["effects"] if e["arm"] == arm)


@pytest.mark.parametrize(
    ("outcome", "arm", "difference", "low", "high"),
    [
        ("visit", "mens_email", 0.0766, 0.0700, 0.0832),
        ("visit", "womens_email", 0.0452, 0.0389, 0.0516),
        ("conversion", "mens_email", 0.00681, 0.00500, 0.00861),
    ],
)
def test_effects_match_the_independent_figures(report, outcome, arm, difference, low, high) -> None:
    e = _effect(report, outcome, arm)
    digits = 4 if outcome == "visit" else 5
    assert round(e["difference"], digits) == pytest.approx(difference)
    assert round(e["ci_low"], digits) == pytest.approx(low)
    assert round(e["ci_high"], digits) == pytest.approx(high)
    assert e["method"] == "normal" and e["p_value"] < 1e-10


def test_arms_sizes_and_means_match_the_source_notes(report) -> None:
    visit = next(r for r in report["outcomes"] if r["outcome"] == "visit")
    arms = {a["arm"]: a for a in visit["arms"]}
    assert report["n"] == 64_000
    assert {k: round(v["mean"], 4) for k, v in arms.items()} == {
        "mens_email": 0.1828,
        "womens_email": 0.1514,
        "no_email": 0.1062,
    }
    spend = next(r for r in report["outcomes"] if r["outcome"] == "spend")
    assert spend["kind"] == "mean"
    assert round(next(a for a in spend["arms"] if a["arm"] == "mens_email")["mean"], 3) == 1.423
    # A randomised 1/3 split: no sample ratio mismatch, and breakdowns by the mapped covariates.
    assert not visit["sample_ratio"]["mismatch"]
    assert {r["value"] for r in visit["breakdowns"]["channel"]} == {"Multichannel", "Phone", "Web"}

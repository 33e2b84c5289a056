"""Campaign YAML: the shapes it accepts and one-line errors naming the field for what it refuses."""

from __future__ import annotations

import pytest

from configs.campaign import CampaignSpecError, load_campaign, parse_campaign
from configs.settings import ConfigError


def _spec(**over) -> dict:
    raw = {
        "name": "winback",
        "audience": "churn_risk = 'high'",
        "arms": [{"name": "treatment", "share": 0.5}, {"name": "control", "share": 0.5, "control": True}],
        "start": "2026-01-01",
        "end": "2026-02-01",
        "outcome": {"kind": "conversion", "window_days": 30},
        "minimum_effect": 0.02,
    }
    raw.update(over)
    return raw


def test_a_valid_campaign() -> None:
    spec = parse_campaign(_spec(), origin="winback.yaml")
    assert spec.control == "control"
    assert spec.shares == {"treatment": 0.5, "control": 0.5}
    assert spec.tag_key == "persona_campaign_winback"
    assert spec.outcome.binary and spec.outcome.label == "conversion"


def test_fraction_shares_sum_exactly() -> None:
    arms = [{"name": n, "share": "1/3"} for n in ("a", "b")] + [
        {"name": "c", "share": "1/3", "control": True}
    ]
    assert sum(parse_campaign(_spec(arms=arms), origin="x").shares.values()) == pytest.approx(1)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"arms": [{"name": "t", "share": 0.5}, {"name": "c", "share": 0.4, "control": True}]},
            "winback.yaml: arms: shares sum to 0.9, they must sum to 1",
        ),
        (
            {"arms": [{"name": "t", "share": 0.5}, {"name": "c", "share": 0.5}]},
            "winback.yaml: arms: exactly one arm must be `control: true`, got 0",
        ),
        ({"outcome": {"kind": "event"}}, "winback.yaml: outcome: an `event` outcome needs `event_type`"),
        ({"outcome": {"kind": "clicks"}}, "winback.yaml: outcome.kind: "),
        ({"end": "2025-12-01"}, "winback.yaml: end: 2025-12-01 is not after start 2026-01-01"),
        ({"audience": None}, "winback.yaml: audience: `audience` is required"),
        ({"name": "Bad Name"}, "winback.yaml: name: "),
        ({"colour": "red"}, "winback.yaml: colour: unknown key"),
    ],
)
def test_bad_campaigns_name_the_field(over, message) -> None:
    with pytest.raises(CampaignSpecError) as info:
        parse_campaign(_spec(**over), origin="winback.yaml")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)  # the CLI prints it on one line and exits 2


def test_the_shipped_hillstrom_mapping_loads() -> None:
    spec = load_campaign("hillstrom")
    assert spec.control == "no_email"
    assert list(spec.source.outcomes) == ["visit", "conversion", "spend"]

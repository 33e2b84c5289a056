"""Each built-in tag of configs/tags.yaml on hand-built customers (expected values worked out by hand).

Cut points used here (not fitted, so the scores are easy to follow):
recency edges [30, 60, 120, 240] -> qcut 1..5, rfm_r = 6 - qcut (recency 10 -> 5, 100 -> 3, 400 -> 1);
frequency edges [1, 2, 4, 8] (0 -> 1, 1 -> 2, 2 -> 3, 10 -> 5); monetary edges [100, 200, 400, 800]
(50 -> 1, 150 -> 2, 300 -> 3, 1000 -> 5).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from artifacts.catalog import read_catalog
from core.errors import ValidationFailed
from models.tag_engine import format_values

CATALOG = read_catalog(Path(__file__).resolve().parents[2] / "configs" / "tags.yaml")
BUYERS = "frequency_365d > 0"  # the population the catalog fits RFM on
CUTS = {
    "cutpoints": {
        "recency": {"feature": "recency_days", "bins": 5, "population": BUYERS, "edges": [30, 60, 120, 240]},
        "frequency": {"feature": "frequency_365d", "bins": 5, "population": BUYERS, "edges": [1, 2, 4, 8]},
        "monetary": {
            "feature": "monetary_365d",
            "bins": 5,
            "population": BUYERS,
            "edges": [100, 200, 400, 800],
        },
    }
}
BASE = {
    "customer_id": "P000000000001",
    "recency_days": 10.0,
    "frequency_365d": 10,
    "monetary_365d": 1000.0,
    "orders_lifetime": 20,
    "tenure_days": 400,
    "discount_rate_365d": 0.1,
    "return_rate_365d": 0.0,
    "complaints_90d": 0,
    "support_tickets_90d": 0,
    "visits_90d": 5,
    "email_opens_90d": 3,
    "segment_id": 2,
    "persona": "high_value_loyal",
    "churn_tier": "low",
    "conversion_tier": "cold",
    "churn_reasons": None,
    "conversion_reasons": None,
    "clv_value": 80.0,
    "clv_tier": "standard",
    "uplift_score": 0.02,
    "uplift_group": "lost_cause",
    "next_best": None,
    "next_best_list": None,
}


def tags_of(**changes) -> dict:
    """Tags of BASE with `changes`, by the batch engine; asserts the single-customer path agrees."""
    row = {**BASE, **changes}
    batch = CATALOG.evaluate(pd.DataFrame([row]), CUTS).iloc[0].to_dict()
    one = CATALOG.evaluate_one(row, CUTS)
    for key, value in one.items():
        other = batch[key]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(other), key
        else:
            assert value == other, (key, value, other)
    return one


def test_base_customer_is_a_champion_active_vip():
    t = tags_of()
    assert (t["rfm_r"], t["rfm_f"], t["rfm_m"]) == (5.0, 5.0, 5.0)
    assert t["rfm_segment"] == "champions"
    assert t["lifecycle_stage"] == "active"
    assert t["high_value"] is True
    assert t["vip"] and not t["discount_sensitive"] and not t["frequent_returner"]
    assert not t["complaint_risk"] and not t["channel_inactive"]
    assert (t["model_segment"], t["persona_name"], t["churn_risk"], t["buying_intent"]) == (
        2.0,
        "high_value_loyal",
        "low",
        "cold",
    )


def test_no_order_for_400_days_is_lost_and_churned():
    t = tags_of(recency_days=400.0, frequency_365d=0, monetary_365d=0.0)
    assert (t["rfm_r"], t["rfm_f"], t["rfm_m"]) == (1.0, 1.0, 1.0)
    assert t["rfm_segment"] == "lost"
    assert t["lifecycle_stage"] == "churned"
    assert not t["high_value"] and not t["vip"]


@pytest.mark.parametrize(
    ("changes", "scores", "segment"),
    [
        ({}, (5, 5, 5), "champions"),
        ({"recency_days": 300.0}, (1, 5, 5), "cant_lose"),
        ({"recency_days": 100.0}, (3, 5, 5), "loyal"),
        ({"recency_days": 150.0}, (2, 5, 5), "at_risk"),
        ({"frequency_365d": 1, "monetary_365d": 50.0}, (5, 2, 1), "new"),
        ({"recency_days": 45.0, "frequency_365d": 1, "monetary_365d": 50.0}, (4, 2, 1), "promising"),
        ({"frequency_365d": 1, "monetary_365d": 300.0}, (5, 2, 3), "potential_loyalist"),
        ({"recency_days": 100.0, "frequency_365d": 2, "monetary_365d": 150.0}, (3, 3, 2), "need_attention"),
        ({"recency_days": 100.0, "frequency_365d": 1, "monetary_365d": 50.0}, (3, 2, 1), "about_to_sleep"),
        ({"recency_days": 150.0, "frequency_365d": 1, "monetary_365d": 150.0}, (2, 2, 2), "hibernating"),
        ({"recency_days": 400.0, "frequency_365d": 1, "monetary_365d": 150.0}, (1, 2, 2), "lost"),
    ],
)
def test_rfm_segments(changes, scores, segment):
    t = tags_of(**changes)
    assert (t["rfm_r"], t["rfm_f"], t["rfm_m"]) == tuple(float(s) for s in scores)
    assert t["rfm_segment"] == segment


def test_customer_without_orders_is_a_prospect_without_rfm():
    t = tags_of(
        recency_days=None, frequency_365d=None, monetary_365d=None, orders_lifetime=0, tenure_days=None
    )
    assert math.isnan(t["rfm_r"]) and math.isnan(t["rfm_m"])
    assert t["rfm_segment"] is None
    assert t["lifecycle_stage"] == "prospect"
    assert not t["high_value"] and not t["vip"]


@pytest.mark.parametrize(
    ("changes", "stage"),
    [
        ({"orders_lifetime": 0}, "prospect"),
        ({"recency_days": 366.0}, "churned"),
        ({"recency_days": 365.0}, "at_risk"),
        ({"recency_days": 91.0}, "at_risk"),
        ({"recency_days": 90.0, "tenure_days": 30}, "new"),
        ({"tenure_days": 90}, "new"),
        ({"tenure_days": 731}, "mature"),
        ({"tenure_days": 730}, "active"),
    ],
)
def test_lifecycle_stage(changes, stage):
    assert tags_of(**changes)["lifecycle_stage"] == stage


def test_high_value_and_vip():
    assert tags_of(monetary_365d=500.0)["high_value"]  # qcut 4
    assert not tags_of(monetary_365d=300.0)["high_value"]  # qcut 3
    assert not tags_of(monetary_365d=500.0)["vip"]  # rfm_m 4 < 5
    assert not tags_of(frequency_365d=3)["vip"]  # rfm_f 3 < 4
    assert tags_of(frequency_365d=4, recency_days=180.0)["vip"]
    assert not tags_of(recency_days=181.0)["vip"]  # no longer active


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"discount_rate_365d": 0.3, "frequency_365d": 2}, True),
        ({"discount_rate_365d": 0.29, "frequency_365d": 5}, False),
        ({"discount_rate_365d": 0.8, "frequency_365d": 1}, False),
        ({"discount_rate_365d": None}, False),
    ],
)
def test_discount_sensitive(changes, expected):
    assert bool(tags_of(**changes)["discount_sensitive"]) is expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"return_rate_365d": 0.25, "frequency_365d": 3}, True),
        ({"return_rate_365d": 0.5, "frequency_365d": 2}, False),
        ({"return_rate_365d": 0.2, "frequency_365d": 9}, False),
    ],
)
def test_frequent_returner(changes, expected):
    assert bool(tags_of(**changes)["frequent_returner"]) is expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"complaints_90d": 2}, True),
        ({"complaints_90d": 1, "support_tickets_90d": 3}, True),
        ({"complaints_90d": 1, "support_tickets_90d": 2}, False),
        ({"complaints_90d": None, "support_tickets_90d": 9}, False),
    ],
)
def test_complaint_risk(changes, expected):
    assert bool(tags_of(**changes)["complaint_risk"]) is expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"visits_90d": 0, "email_opens_90d": 0}, True),
        ({"visits_90d": None, "email_opens_90d": None}, True),  # no engagement row at all
        ({"visits_90d": 1, "email_opens_90d": 0}, False),
        ({"visits_90d": 0, "email_opens_90d": 2}, False),
    ],
)
def test_channel_inactive(changes, expected):
    assert bool(tags_of(**changes)["channel_inactive"]) is expected


def test_model_tags_pass_model_outputs_through():
    t = tags_of(segment_id=4, persona="at_risk", churn_tier="high", conversion_tier="hot")
    assert (t["model_segment"], t["persona_name"], t["churn_risk"], t["buying_intent"]) == (
        4.0,
        "at_risk",
        "high",
        "hot",
    )
    t = tags_of(segment_id=None, persona=None, churn_tier=None, conversion_tier=None)
    assert math.isnan(t["model_segment"]) and t["persona_name"] is None and t["churn_risk"] is None


def test_a_tier_value_outside_its_list_is_refused_in_both_paths():
    row = {**BASE, "churn_tier": "catastrophic"}
    with pytest.raises(
        ValidationFailed, match="tag 'churn_risk' gave 'catastrophic' for customer P000000000001"
    ):
        CATALOG.evaluate(pd.DataFrame([row]), CUTS)
    with pytest.raises(ValidationFailed, match="tag 'churn_risk' gave 'catastrophic'"):
        CATALOG.evaluate_one(row, CUTS)


def test_values_as_the_crm_sees_them():
    frame = pd.DataFrame([BASE, {**BASE, "recency_days": None, "orders_lifetime": 0}])
    shown = format_values(CATALOG.evaluate(frame, CUTS), CATALOG)
    assert shown.loc[0, "rfm_r"] == "5" and shown.loc[0, "high_value"] == "true"
    assert shown.loc[0, "model_segment"] == "2" and shown.loc[0, "rfm_segment"] == "champions"
    assert shown.loc[1, "rfm_r"] is None and shown.loc[1, "rfm_segment"] is None
    assert shown.loc[1, "lifecycle_stage"] == "prospect" and shown.loc[1, "vip"] == "false"


def test_produced_by_names_rule_and_model_versions():
    produced = CATALOG.produced_by({"persona-churn": "7"})
    assert produced["rfm_segment"] == "rule:rfm_segment@v2"
    assert produced["churn_risk"] == "model:persona-churn@7"
    assert produced["persona_name"] == "model:persona-segments@unknown"


def test_value_tags_follow_the_value_model():
    t = tags_of(clv_value=1234.567, clv_tier="top")
    assert t["value_tier"] == "top" and t["predicted_value"] == pytest.approx(1234.57)
    t = tags_of(clv_value=None, clv_tier=None)
    assert t["value_tier"] is None and math.isnan(t["predicted_value"])


def test_uplift_tier_follows_the_uplift_model():
    assert tags_of(uplift_group="persuadable")["uplift_tier"] == "persuadable"
    assert tags_of(uplift_group="do_not_disturb")["uplift_tier"] == "do_not_disturb"
    assert tags_of(uplift_score=None, uplift_group=None)["uplift_tier"] is None

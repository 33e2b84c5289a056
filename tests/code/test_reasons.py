"""The reason catalog: feature + direction -> a phrase with the value, in English and Chinese."""

from __future__ import annotations

import numpy as np
import pytest

from artifacts.catalog import load_reason_catalog
from configs.settings import load_settings
from core.errors import CatalogError
from models.reasons import parse_reason_catalog, render_reasons


@pytest.fixture(scope="module")
def repo_catalog():
    return load_reason_catalog(load_settings())


@pytest.mark.parametrize(
    ("feature", "value", "en", "zh"),
    [
        ("recency_days", 120.4, "no order for 120 days", "已 120 天未下单"),
        ("complaints_90d", 3, "3 complaints in 90 days", "近 90 天投诉 3 次"),
        ("monetary_trend_90d", 0.4, "spend down 60 % on the previous 90 days", "消费较前 90 天下降 60%"),
        ("monetary_trend_90d", 1.5, "spend up 50 % on the previous 90 days", "消费较前 90 天增长 50%"),
        ("visits_90d", 0, "no visit in 90 days", "近 90 天未访问"),
        ("lead_source", "webinar", "lead source webinar", "线索来源 webinar"),
    ],
)
def test_repository_phrases(repo_catalog, feature, value, en, zh) -> None:
    assert repo_catalog.phrase(feature, 0.3, value, "en") == en
    assert repo_catalog.phrase(feature, 0.3, value, "zh") == zh


def test_unknown_feature_falls_back_and_missing_value_reads_unknown(repo_catalog) -> None:
    assert repo_catalog.phrase("not_in_catalog", 0.3, 2.5, "en") == "not_in_catalog = 2.50"
    # a missing value never fills a placeholder ("signed up ? days ago" read like a bug in the CRM)
    assert repo_catalog.phrase("recency_days", 0.3, None, "en") == "never ordered"
    assert repo_catalog.phrase("signup_tenure_days", 0.3, float("nan"), "zh") == "无注册记录"
    assert repo_catalog.phrase("customer_type", 0.3, None, "en") == "customer type unknown"
    assert repo_catalog.phrase("frequency_30d", 0.3, None, "en") == "frequency_30d: not on record"
    assert repo_catalog.phrase("not_in_catalog", 0.3, None, "zh") == "not_in_catalog：无记录"


def test_no_repository_phrase_shows_a_question_mark(repo_catalog) -> None:
    for p in repo_catalog.phrases:
        for value in (None, float("nan"), 0.0, 3.0, "x"):
            for lang in ("en", "zh"):
                assert "?" not in repo_catalog.phrase(p.feature, 0.3, value, lang), (p.feature, value)


def test_effect_picks_the_phrase_by_the_sign_of_the_contribution() -> None:
    catalog = parse_reason_catalog(
        [
            {"feature": "visits_90d", "effect": "raises", "en": "few visits ({value:.0f})", "zh": "访问少"},
            {"feature": "visits_90d", "effect": "lowers", "en": "{value:.0f} visits", "zh": "访问多"},
        ]
    )
    assert catalog.phrase("visits_90d", 0.2, 1, "en") == "few visits (1)"
    assert catalog.phrase("visits_90d", -0.2, 30, "en") == "30 visits"


def test_render_keeps_only_reasons_raising_the_probability_largest_first() -> None:
    catalog = parse_reason_catalog(
        [
            {"feature": "a", "en": "a is {value:.0f}", "zh": "a 为 {value:.0f}"},
            {"feature": "b", "en": "b is {value:.0f}", "zh": "b 为 {value:.0f}"},
        ]
    )
    contrib = np.array([[0.1, 0.5, -0.9], [-0.1, -0.2, -0.3]])
    values = np.array([[1, 2, 3], [4, 5, 6]], dtype=object)
    out = render_reasons(
        catalog, features=["a", "b", "c"], contributions=contrib, values=values, top_k=3, language="en"
    )
    assert out.tolist() == ["b is 2; a is 1", None]
    zh = render_reasons(
        catalog, features=["a", "b", "c"], contributions=contrib, values=values, top_k=1, language="zh"
    )
    assert zh.tolist() == ["b 为 2", None]


def test_catalog_errors_name_the_entry() -> None:
    with pytest.raises(CatalogError) as err:
        parse_reason_catalog(
            [
                {"feature": "recency_days", "en": "x {nope}", "zh": "y"},
                {"feature": "z", "effect": "up", "en": "a"},
            ],
            known_names={"recency_days"},
        )
    text = str(err.value)
    assert "entry 1 (recency_days): bad placeholder in the 'en' phrase" in text
    assert "entry 2: unknown feature 'z'" in text and "effect must be one of" in text
    assert "entry 2 (z): missing the 'zh' phrase" in text

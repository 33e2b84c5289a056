"""The dashboard's pure parts, on small hand-checked data: PSI, the data's clock, the churn-risk history
rebuilt from tag changes, persona profiles, sessions, which paths are open, and the catalog texts."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from artifacts.texts import LANGUAGES, parse_texts, read_texts
from configs.settings import load_settings
from core.errors import CatalogError
from models.drift import psi
from serving.auth import is_open
from serving.dashboard.overview import distribution_over_time, persona_profiles
from serving.dashboard.session import SessionSigner


def test_psi_is_zero_for_the_same_sample_and_matches_a_hand_computed_shift() -> None:
    reference = np.array([1.0, 2.0, 3.0, 4.0] * 25)
    assert psi(reference, reference, bins=4) == pytest.approx(0.0)
    # quartile edges of the reference: 1.75, 2.5, 3.25 -> bins hold 1 | 2 | 3 | 4, 25 % each
    current = np.array([1.0] * 50 + [4.0] * 50)  # shares 50 %, 0, 0, 50 %
    expected = 2 * (0.5 - 0.25) * math.log(0.5 / 0.25) + 2 * (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    assert psi(reference, current, bins=4) == pytest.approx(expected)


def test_psi_counts_values_that_go_missing_as_drift() -> None:
    reference = np.arange(100, dtype=float)
    current = np.where(np.arange(100) < 50, np.nan, np.arange(100, dtype=float))
    assert psi(reference, current) > 0.25
    assert math.isnan(psi(np.array([]), reference))


def test_churn_risk_over_time_is_rebuilt_from_the_changes() -> None:
    moves = pd.DataFrame(
        [
            ("2026-01-01", None, "low", 3),
            ("2026-01-01", None, "high", 1),
            ("2026-01-02", "low", "high", 2),
            ("2026-01-03", "high", None, 1),  # a customer's tag cleared (e.g. consent withdrawn)
        ],
        columns=["day", "old_value", "new_value", "n"],
    )
    wide = distribution_over_time(moves).pivot_table(index="day", columns="value", values="customers")
    assert wide.loc["2026-01-01"].to_dict() == {"high": 1, "low": 3}
    assert wide.loc["2026-01-02"].to_dict() == {"high": 3, "low": 1}
    assert wide.loc["2026-01-03"].to_dict() == {"high": 2, "low": 1}


def test_persona_profiles_are_medians_per_persona() -> None:
    scores = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "persona": ["x", "x", "x", "prospect"]})
    features = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "recency_days": [10.0, 20.0, 90.0, np.nan],
            "frequency_365d": [1, 3, 5, 0],
            "monetary_365d": [100.0, 300.0, 500.0, 0.0],
        }
    )
    out = persona_profiles(scores, features).set_index("persona")
    assert out.loc["x", "customers"] == 3 and out.loc["x", "share"] == pytest.approx(0.75)
    assert out.loc["x", "recency_days"] == 20.0 and out.loc["x", "monetary_365d"] == 300.0
    assert math.isnan(out.loc["prospect", "recency_days"])


def test_sessions_expire_and_do_not_survive_a_key_rotation() -> None:
    signer = SessionSigner([b"k" * 32], hours=1)
    token = signer.issue(now=1_000)
    assert signer.valid(token, now=1_000 + 3599)
    assert not signer.valid(token, now=1_000 + 3601)
    assert not signer.valid(token.replace(token[-1], "0" if token[-1] != "0" else "1"), now=1_000)
    assert not SessionSigner([b"j" * 32], hours=1).valid(token, now=1_000)
    assert not signer.valid("9999999999.forged", now=1_000) and not signer.valid(None)


def test_open_paths_are_the_docs_page_files_and_nothing_with_data() -> None:
    assert is_open("/static_content/swagger-ui-bundle.js", "GET")
    assert not is_open("/static_content/x", "POST")
    assert is_open("/", "GET") and is_open("/readyz", "GET")
    assert not is_open("/v1/score", "POST") and not is_open("/v1/churn", "GET")
    assert is_open("/dashboard/", "GET")  # the dashboard checks its own access (cookie or key)
    assert not is_open("/dashboardx", "GET")


def test_every_catalog_tag_value_persona_and_feature_has_words_in_every_language() -> None:
    from artifacts.catalog import load_catalog
    from features.build import FEATURE_DTYPES
    from models.personas import PERSONA_RULES, PROSPECT, QUALIFIERS
    from models.tag_engine import MODEL_OUTPUTS

    settings = load_settings()
    texts = read_texts(settings.dashboard.texts_path())
    catalog = load_catalog(settings)
    missing = []
    for tag in catalog.tags:
        words = texts.tags.get(tag.key, {})
        missing += [f"tags.{tag.key}.label.{lang}" for lang in LANGUAGES if lang not in words]
        if tag.value_type in ("tier", "category") and tag.values and tag.key not in ("persona_name",):
            for value in tag.values:
                own = texts.values.get(tag.key, {}).get(value, {})
                missing += [f"tags.{tag.key}.values.{value}.{lang}" for lang in LANGUAGES if lang not in own]
    for word in (w for pair in QUALIFIERS.values() for w in pair):
        missing += [
            f"ui.qualifier_{word}.{lang}"
            for lang in LANGUAGES
            if lang not in texts.ui.get(f"qualifier_{word}", {})
        ]
    for name in [*(rule.name for rule in PERSONA_RULES), PROSPECT]:
        missing += [
            f"personas.{name}.{lang}" for lang in LANGUAGES if lang not in texts.personas.get(name, {})
        ]
        missing += [
            f"personas.{name}.action.{lang}" for lang in LANGUAGES if lang not in texts.actions.get(name, {})
        ]
    for name in [*FEATURE_DTYPES, *MODEL_OUTPUTS]:
        missing += [
            f"features.{name}.{lang}" for lang in LANGUAGES if lang not in texts.features.get(name, {})
        ]
    assert not missing, f"add to {settings.dashboard.texts}: {missing}"
    assert texts.persona("potential_2", "zh") == "潜力客户 2"  # a second segment of the same persona
    assert texts.value("vip", "true", "zh", value_type="flag") == "是"
    assert texts.tag("a_tag_nobody_labelled", "zh") == "a_tag_nobody_labelled"


def test_a_texts_file_with_an_unknown_language_is_refused_with_its_place() -> None:
    with pytest.raises(CatalogError, match=r"tags.vip.label: unknown language"):
        parse_texts({"tags": {"vip": {"label": {"en": "VIP", "fr": "VIP"}}}})


def test_qualified_persona_names_read_as_the_persona_and_its_qualifiers() -> None:
    texts = read_texts(load_settings().dashboard.texts_path())
    assert texts.persona("high_value_new_lapsing", "en") == "High-value new (lapsing)"
    assert texts.persona("high_value_new_lapsing", "zh") == "高价值新客户 (趋于沉默)"
    assert texts.persona("potential_big_spenders_active", "en") == "Potential (big spenders, active)"
    assert texts.action("at_risk_frequent", "en") == texts.action("at_risk", "en") != ""
    assert texts.persona("something_else", "en") == "something_else"


def _campaign(rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """A campaign whose offer truly lifts conversion among persuadables only, reported by the real
    report builder, as the dashboard reads it."""
    from configs.campaign import parse_campaign
    from models.campaign_report import build_report
    from serving.dashboard.campaigns import CampaignResult

    spec = parse_campaign(
        {
            "name": "promo",
            "audience": "true",
            "arms": [{"name": "offer", "share": 0.5}, {"name": "holdout", "share": 0.5, "control": True}],
            "start": "2026-01-01",
            "end": "2026-01-31",
            "outcome": {"kind": "conversion", "window_days": 30},
            "breakdown_by": ["persona_name", "uplift_tier"],
        },
        origin="promo.yaml",
    )
    n = 4000
    arm = rng.choice(["offer", "holdout"], n)
    tier = rng.choice(["persuadable", "sure_thing"], n)
    rate = np.where((arm == "offer") & (tier == "persuadable"), 0.30, 0.10)
    frame = pd.DataFrame(
        {
            "arm": arm,
            "conversion": (rng.random(n) < rate).astype(float),
            "persona_name": rng.choice(["loyal", "at_risk"], n),
            "uplift_tier": tier,
        }
    )
    report = build_report(spec, frame, outcomes={"conversion": True}, status={"complete": True})
    sizes = frame["arm"].value_counts().to_dict()
    return CampaignResult(
        name="promo",
        description="",
        start="2026-01-01",
        end="2026-01-31",
        audience=None,
        control="holdout",
        arms=["offer", "holdout"],
        assigned={k: int(v) for k, v in sizes.items()},
        report=report,
    ), sizes


def test_a_campaign_reads_as_arms_effect_with_interval_and_uplift_tiers_first() -> None:
    from serving.dashboard.overview import TagInfo
    from serving.dashboard.pages import campaign_context

    result, sizes = _campaign(np.random.default_rng(3))
    texts = read_texts(load_settings().dashboard.texts_path())
    tags = [TagInfo("uplift_tier", "tier", ("persuadable", "sure_thing"), "persona-uplift", "")]
    for lang in LANGUAGES:
        ctx = campaign_context(result, tags, texts, lang)
        arms = {a["name"]: a for a in ctx["arms"]}
        assert arms["offer"]["assigned"] == f"{sizes['offer']:,}" and arms["holdout"]["control"]
        (effect,) = ctx["effects"]
        diff = result.report["outcomes"][0]["effects"][0]
        assert effect["difference"] == f"{diff['difference'] * 100:+.1f} pp"
        assert effect["verdict"] == "effect_up"  # +10 pp on half the customers: the interval is above 0
        trace = ctx["chart"]["data"][0]
        assert trace["x"] == [pytest.approx(diff["difference"] * 100)]
        assert trace["error_x"]["array"][0] == pytest.approx((diff["ci_high"] - diff["difference"]) * 100)
        assert [b["key"] for b in ctx["breakdowns"]] == ["uplift_tier", "persona_name"]
        tiers = {r["value"]: r["effects"][0]["verdict"] for r in ctx["breakdowns"][0]["rows"]}
        persuadable = texts.value("uplift_tier", "persuadable", lang, value_type="tier")
        sure_thing = texts.value("uplift_tier", "sure_thing", lang, value_type="tier")
        assert tiers[persuadable] == "effect_up" and tiers[sure_thing] == "effect_unclear"
    assert "营销" in texts.ui_text("campaign_results", "zh")


def test_a_campaign_not_evaluable_yet_still_shows_its_arms() -> None:
    from serving.dashboard.campaigns import CampaignResult
    from serving.dashboard.pages import campaign_context

    texts = read_texts(load_settings().dashboard.texts_path())
    result = CampaignResult(
        "later",
        "",
        "2027-01-01",
        None,
        None,
        "holdout",
        ["offer", "holdout"],
        {"offer": 5, "holdout": 4},
        None,
        "campaign 'later': start: 2027-01-01 is after the data's as-of 2026-02-01",
    )
    ctx = campaign_context(result, [], texts, "en")
    assert [a["assigned"] for a in ctx["arms"]] == ["5", "4"] and not ctx["effects"] and ctx["chart"] is None
    assert ctx["not_evaluable"].startswith("campaign 'later'") and ctx["state"] == "not evaluable yet"


def test_the_saved_summaries_read_back_as_the_same_pages() -> None:
    from serving.dashboard import summary
    from serving.dashboard.model_health import ModelHealth, ModelVersion, ViewFreshness
    from serving.dashboard.overview import Overview, TagInfo
    from serving.dashboard.pages import models_context, overview_context

    result, _ = _campaign(np.random.default_rng(4))
    tags = [
        TagInfo("churn_risk", "tier", ("low", "medium", "high"), "persona-churn", "risk"),
        TagInfo("rfm_r", "number", None, None, "recency score"),
    ]
    overview = Overview(
        known=10,
        withdrawn=1,
        profiled=9,
        scored=9,
        as_of=pd.Timestamp("2026-02-01", tz="UTC"),
        snapshot=pd.Timestamp("2026-01-01", tz="UTC"),
        personas=pd.DataFrame(
            {
                "persona": ["loyal"],
                "customers": [9],
                "recency_days": [np.nan],
                "frequency_365d": [2.0],
                "monetary_365d": [10.5],
                "share": [1.0],
            }
        ),
        tags=tags,
        tag_counts=pd.DataFrame(
            {
                "tag": ["churn_risk", "churn_risk", "rfm_r"],
                "value": ["high", None, "5"],
                "customers": [4, 5, 9],
            }
        ),
        churn_tag="churn_risk",
        churn_history=pd.DataFrame({"day": ["2026-01-01"], "value": ["high"], "customers": [4]}),
        outbox={"pending": 1, "delivered": 2, "dead": 0},
        campaigns=[result],
    )
    texts = read_texts(load_settings().dashboard.texts_path())
    back = summary.overview_from(json.loads(json.dumps(summary.overview_payload(overview))))
    assert overview_context(back, texts, "zh") == overview_context(overview, texts, "zh")
    version = ModelVersion(
        1,
        pd.Timestamp("2026-01-01", tz="UTC"),
        {"test_auc": 0.8},
        ["champion"],
        "",
        "",
        "promote",
        "churn_v1",
        {"snapshot": "2026-01-01"},
    )
    models = [ModelHealth("churn", "persona-churn", [version]), ModelHealth("conversion", "persona-conv")]
    drift = pd.DataFrame({"churn": [0.01, np.nan]}, index=["recency_days", "tenure_days"])
    fresh = [
        ViewFreshness("customer_transactions", pd.Timestamp("2026-01-01", tz="UTC"), 31.0, 90.0, "fresh")
    ]
    again = summary.models_from(json.loads(json.dumps(summary.models_payload(models, drift, fresh))))
    assert models_context(*again, texts, "en", psi_warning=0.2) == models_context(
        models, drift, fresh, texts, "en", psi_warning=0.2
    )


def test_a_tag_with_many_values_is_drawn_as_a_histogram_or_its_top_values() -> None:
    from serving.dashboard.overview import MAX_BARS, Overview, TagInfo, compact_counts

    rng = np.random.default_rng(0)
    spend = np.round(rng.lognormal(3, 1, 2000), 2)
    values, customers = np.unique(spend, return_counts=True)
    reasons = [f"reason {i}" for i in range(40)]
    counts = pd.concat(
        [
            pd.DataFrame(
                {"tag": "predicted_value", "value": [str(v) for v in values], "customers": customers}
            ),
            pd.DataFrame({"tag": "predicted_value", "value": [None], "customers": [7]}),
            pd.DataFrame({"tag": "churn_reasons_text", "value": reasons, "customers": range(1, 41)}),
            pd.DataFrame({"tag": "churn_risk", "value": ["low", "high"], "customers": [5, 6]}),
        ],
        ignore_index=True,
    )
    tags = [
        TagInfo("predicted_value", "number", None, "persona-value", ""),
        TagInfo("churn_reasons_text", "category", None, None, ""),
        TagInfo("churn_risk", "tier", ("low", "medium", "high"), "persona-churn", ""),
    ]
    data = Overview(tag_counts=compact_counts(counts, tags), tags=tags)
    hist = data.counts_of("predicted_value")
    bins = hist[hist["kind"] == "bin"]
    assert len(bins) <= MAX_BARS and bins["customers"].sum() == 2000  # every customer in one bin
    assert hist["value"].isna().sum() == 1 and hist.loc[hist["value"].isna(), "customers"].item() == 7
    assert "10 - 20" in set(bins["value"]) and "20 - 50" in set(bins["value"])  # long-tailed: 1-2-5 steps
    flat = compact_counts(
        pd.DataFrame({"tag": "rfm_r", "value": [str(v) for v in range(100)], "customers": 1}),
        [TagInfo("rfm_r", "number", None, None, "")],
    )
    assert len(flat) <= MAX_BARS and flat["customers"].sum() == 100 and flat["value"].iloc[0] == "0 - 7"
    top = data.counts_of("churn_reasons_text")
    assert len(top) == MAX_BARS and top["kind"].iloc[-1] == "other"
    assert top["value"].iloc[-1] == str(40 - (MAX_BARS - 1))
    assert top["customers"].sum() == sum(range(1, 41)) and top["customers"].iloc[0] == 40
    assert list(data.counts_of("churn_risk")["value"]) == ["low", "high"]  # tiers untouched, in order


def test_cut_labels_stay_distinct() -> None:
    from serving.dashboard.pages import _short_labels

    long = "no order for 120 days; no visit in 90 days; spent 0 in 30 days"
    out = _short_labels([long + " a", long + " b", "short"])
    assert len(set(out)) == 3 and all(len(x) <= 35 for x in out) and out[2] == "short"

"""serving.scoring.run_models on numpy columns: the same outputs for a DataFrame or columns, and the
one-pass reasons equal to the reasons computed from the encoded matrix."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.classifier import fit_baseline, fit_classifier
from models.segmentation import fit_segmentation
from serving.scoring import Population, columns_of, compile_populations, finite_columns, run_models

FEATURES = ["recency_days", "frequency_365d", "plan"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    recency = rng.gamma(2.0, 40.0, size=n)
    frequency = rng.poisson(4, size=n).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], size=n).astype(object)
    plan[::11] = None
    logit = 0.02 * recency - 0.3 * frequency + np.where(plan == "pro", -1.0, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"recency_days": recency, "frequency_365d": frequency, "plan": plan, "label": y})


@pytest.fixture(scope="module")
def state():  # type: ignore[no-untyped-def]
    train, valid = _frame(1200, 1), _frame(500, 2)
    kwargs = {"train": train, "valid": valid, "features": FEATURES, "label": "label", "categorical": ["plan"]}
    churn = fit_classifier(kind="churn", seed=1, **kwargs)
    conversion = fit_baseline(kind="conversion", seed=1, **kwargs)
    segments = fit_segmentation(X=train, features=FEATURES[:2], k=3, k_range=(2, 4), seed=1)

    def loaded(bundle):  # type: ignore[no-untyped-def]
        return SimpleNamespace(bundle=bundle, version="1")

    return SimpleNamespace(
        models={"segments": loaded(segments), "churn": loaded(churn), "conversion": loaded(conversion)},
        populations={},
    )


@pytest.mark.parametrize("rows", [1, 7, 400])
def test_columns_and_frames_agree(state, rows: int) -> None:  # type: ignore[no-untyped-def]
    frame = _frame(rows, 9)[FEATURES]
    has = {kind: np.ones(rows, dtype=bool) for kind in ("segments", "churn", "conversion")}
    has["conversion"][::3] = False  # some rows without that model's features
    new = run_models(state, columns_of(frame), has_features=has, explain=("churn", "conversion"))
    via_frame = run_models(state, frame, has_features=has)
    np.testing.assert_allclose(new.churn_probability, via_frame.churn_probability, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        new.conversion_probability, via_frame.conversion_probability, rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(new.segment_id, via_frame.segment_id)
    assert new.churn_tier.tolist() == via_frame.churn_tier.tolist()
    assert new.not_scored["conversion"].tolist() == via_frame.not_scored["conversion"].tolist()
    explained = {"churn", "conversion"} if rows > 1 else {"churn"}  # row 0 has no conversion features
    assert set(new.contributions) == explained and not via_frame.contributions
    assert np.isnan(new.conversion_probability[::3]).all()
    assert (new.not_scored["conversion"][::3] == "no_features").all()
    rows_scored = new.scored_rows["churn"]
    churn = state.models["churn"].bundle
    values = frame[churn.features].to_numpy(dtype=object)[rows_scored]
    x = churn.encode_columns({f: frame[f].to_numpy(dtype=object)[rows_scored] for f in churn.features})
    assert churn.reasons_from(new.contributions["churn"], values) == churn.reasons_encoded(x, values)


def test_columns_of_gives_what_the_online_read_gives() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "s": pd.array(["a", None, "c"], dtype="string"),
        }
    )
    cols = columns_of(frame)
    assert cols["n"].dtype == np.float64 and np.isnan(cols["n"][1]) and cols["n"][2] == 3.0
    assert cols["flag"].tolist() == [1.0, 0.0, 1.0]
    assert cols["s"].dtype == object and cols["s"].tolist() == ["a", None, "c"]


def test_population_masks_nullable_numbers_as_numbers() -> None:
    pops = compile_populations({"churn": "frequency_365d > 0"}, feature_types={"frequency_365d": "number"})
    churn: Population = pops["churn"]
    frame = pd.DataFrame({"frequency_365d": pd.array([2, 0, None], dtype="Int64")})
    assert churn.mask(columns_of(frame), 3).tolist() == [True, False, False]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_reasons_in_words_for_the_crm(state, language: str) -> None:  # type: ignore[no-untyped-def]
    from models.reasons import parse_reason_catalog

    phrases = parse_reason_catalog(
        [
            {
                "feature": "recency_days",
                "effect": "raises",
                "en": "no order for {value:.0f} days",
                "zh": "已 {value:.0f} 天未下单",
            },
            {
                "feature": "frequency_365d",
                "en": "{value:.0f} orders in 365 days",
                "zh": "近一年下单 {value:.0f} 次",
            },
        ]
    )
    worded = SimpleNamespace(
        **vars(state),
        reasons=phrases,
        language=language,
        catalog=SimpleNamespace(input_types={"churn_reasons": "string"}),
        settings=SimpleNamespace(serving=SimpleNamespace(top_reasons=2)),
    )
    frame = _frame(50, 4)[FEATURES]
    frame.loc[0, ["recency_days", "frequency_365d"]] = [240.0, 0.0]  # long gone, no orders: high risk
    has = {kind: np.ones(len(frame), dtype=bool) for kind in ("segments", "churn", "conversion")}
    out = run_models(worded, frame, has_features=has)
    words = out.columns()["churn_reasons"]
    assert out.columns()["conversion_reasons"].tolist() == [None] * len(frame)  # not read by the catalog
    first = "no order for 240 days" if language == "en" else "已 240 天未下单"
    assert words[0].startswith(first)
    # every phrase names a reason that RAISES the probability: compare with the contributions
    contrib = out.contributions["churn"]
    for row, text in enumerate(words):
        raising = int((contrib[row] > 0).sum())
        count = 0 if text is None else len(text.split("; " if language == "en" else "；"))
        assert count == min(raising, 2)


def test_no_contribution_pass_when_neither_reasons_nor_words_are_asked(state) -> None:  # type: ignore[no-untyped-def]
    """`words=()` and no `explain`: the probabilities without TreeSHAP, equal to the explained pass."""
    from models.reasons import parse_reason_catalog

    worded = SimpleNamespace(
        **vars(state),
        reasons=parse_reason_catalog([{"feature": "recency_days", "en": "r {value:.0f}", "zh": "r"}]),
        language="en",
        catalog=SimpleNamespace(input_types={"churn_reasons": "string"}),
        settings=SimpleNamespace(serving=SimpleNamespace(top_reasons=2)),
    )
    frame = _frame(300, 5)[FEATURES]
    has = {kind: np.ones(len(frame), dtype=bool) for kind in ("segments", "churn", "conversion")}
    full = run_models(worded, columns_of(frame), has_features=has)  # words: what the catalog reads
    bare = run_models(worded, columns_of(frame), has_features=has, words=())
    assert set(full.contributions) == {"churn"} and set(full.reasons_text) == {"churn"}
    assert not bare.contributions and not bare.reasons_text
    assert bare.columns()["churn_reasons"].tolist() == [None] * len(frame)
    for kind in ("churn", "conversion"):
        np.testing.assert_allclose(
            getattr(bare, f"{kind}_probability"), getattr(full, f"{kind}_probability"), rtol=0, atol=1e-12
        )
        assert getattr(bare, f"{kind}_tier").tolist() == getattr(full, f"{kind}_tier").tolist()


@pytest.mark.parametrize("absent", ["conversion", "segments", "churn"])
def test_a_model_without_champion_is_skipped_not_fatal(state, absent: str) -> None:  # type: ignore[no-untyped-def]
    partial = SimpleNamespace(
        models={k: v for k, v in state.models.items() if k != absent}, populations=state.populations
    )
    frame = _frame(50, 4)[FEATURES]
    has = {kind: np.ones(50, dtype=bool) for kind in partial.models}
    out = run_models(partial, columns_of(frame), has_features=has, explain=("churn", "conversion"))
    full = run_models(state, columns_of(frame), has_features={**has, absent: np.ones(50, dtype=bool)})
    assert out.not_scored[absent].tolist() == ["no_model"] * 50
    if absent == "segments":
        assert np.isnan(out.segment_id).all() and (out.persona == None).all()  # noqa: E711
    else:
        assert np.isnan(getattr(out, f"{absent}_probability")).all()
        assert (getattr(out, f"{absent}_tier") == None).all()  # noqa: E711
    for kind in set(partial.models) - {"segments"}:  # the others score exactly as with every model
        np.testing.assert_allclose(
            getattr(out, f"{kind}_probability"), getattr(full, f"{kind}_probability"), rtol=0, atol=1e-12
        )
        assert (out.not_scored[kind] == None).all()  # noqa: E711


def test_tags_depending_on_an_absent_input_follow_the_catalog_order() -> None:
    from artifacts.catalog import read_catalog
    from configs.settings import load_settings

    catalog = read_catalog(load_settings().tags.catalog_path())
    # Without events: the engagement tags, and nothing that reads orders only.
    unset = catalog.depending_on({"days_since_last_event", "visits_30d", "visits_90d", "email_opens_90d"})
    assert "channel_inactive" in unset
    assert "lifecycle_stage" not in unset and "rfm_segment" not in unset
    # Without the conversion model: its tier tag, and whatever reads that tag.
    assert catalog.depending_on({"conversion_tier", "conversion_probability"}) == ["buying_intent"]


def test_finite_columns_clean_once_and_pass_cleaned_columns_through() -> None:
    """The online path cleans the read once and `run_models` receives the cleaned columns: cleaning them
    again hands back the same mapping, whose infinities are already missing."""
    raw = {
        "x": np.asarray([1.0, np.inf, -np.inf, np.nan]),
        "y": np.asarray([2.0, 3.0, 4.0, 5.0]),
        "name": np.asarray(["a", None, "b", "c"], dtype=object),
    }
    clean = finite_columns(raw)
    assert clean is not raw and np.isinf(raw["x"]).sum() == 2  # the input is not modified
    np.testing.assert_array_equal(clean["x"], [1.0, np.nan, np.nan, np.nan])
    assert clean["y"] is raw["y"] and clean["name"] is raw["name"]  # nothing to clean: no copy
    assert finite_columns(clean) is clean
    assert finite_columns(dict(clean)) is not clean  # a plain mapping is always checked
    finite = finite_columns({"y": raw["y"], "name": raw["name"]})  # no inf at all: passed through as is
    assert finite["y"] is raw["y"] and finite["name"] is raw["name"] and finite_columns(finite) is finite


def _freshness_one_by_one(view_status, view_seconds, as_of):  # type: ignore[no-untyped-def]
    """Each customer's feature freshness built on its own, as the scorer did before it grouped them."""
    from datetime import UTC, datetime

    n = len(next(iter(view_status.values()))) if view_status else 0
    out: list[dict] = [{} for _ in range(n)]
    for view, status in view_status.items():
        for row in range(n):
            sec, state = int(view_seconds[view][row]), str(status[row])
            if sec < 0:
                out[row][view] = {"as_of": None, "age_days": None, "status": "not_found"}
            else:
                out[row][view] = {
                    "as_of": datetime.fromtimestamp(sec, tz=UTC).isoformat(),
                    "age_days": None if as_of is None else round((as_of.timestamp() - sec) / 86400.0, 2),
                    "status": state,
                }
    return out


@pytest.mark.parametrize("n", [0, 1, 7, 31, 32, 500])
def test_feature_freshness_of_many_customers_is_each_ones_own(n: int) -> None:
    """Freshness entries are built once per (snapshot, status) and shared (from FRESHNESS_GROUPED_FROM
    customers on; one by one below): every customer still gets exactly the entries built for them alone,
    in view order, for present, stale and missing rows."""
    from datetime import UTC, datetime

    from serving.scoring import FRESHNESS_GROUPED_FROM, Scorer

    assert 1 < FRESHNESS_GROUPED_FROM <= 32  # the sizes above go through both paths

    rng = np.random.default_rng(n)
    as_of = datetime(2026, 1, 2, tzinfo=UTC)
    snapshots = np.array([-1, 1_735_000_000, 1_760_000_000, 1_767_000_000], dtype=np.int64)
    view_seconds, view_status = {}, {}
    for view in ("customer_transactions", "customer_leads", "customer_engagement"):
        seconds = rng.choice(snapshots, size=n)
        view_seconds[view] = seconds
        view_status[view] = np.where(
            seconds < 0, "not_found", np.where(seconds < 1_760_000_000, "stale", "present")
        )
    for day in (as_of, None):
        got = Scorer._freshness(None, view_status, view_seconds, day)  # type: ignore[arg-type]
        assert got == _freshness_one_by_one(view_status, view_seconds, day)
        assert all(list(entry) == list(view_status) for entry in got)
    if n >= 100:
        assert {e["status"] for entry in got for e in entry.values()} == {"present", "stale", "not_found"}


def test_the_recommenders_day_of_a_data_clock_is_utc_days_since_the_epoch() -> None:
    """`_epoch_day` (kept per data clock) reads a naive time as UTC, like the pandas conversion it caches."""
    from datetime import UTC, datetime, timedelta

    from serving.scoring import _epoch_day

    aware = datetime(2025, 12, 23, 6, tzinfo=UTC)
    assert _epoch_day(aware) == 20445.25
    assert _epoch_day(aware.replace(tzinfo=None)) == _epoch_day(aware)
    assert _epoch_day(aware + timedelta(days=1)) == 20446.25

"""Data expectations of fitted cut points and of the tags they produce on a reference population."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from artifacts.catalog import read_catalog
from models.tag_engine import fit_cutpoints

CATALOG = read_catalog(Path(__file__).resolve().parents[2] / "configs" / "tags.yaml")


def _population(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "customer_id": [f"P{i:012d}" for i in range(n)],
            "recency_days": np.arange(n, dtype=float),  # 0..999: distinct, so quintiles are exact
            "frequency_365d": rng.permutation(np.arange(1, n + 1)),  # all bought in the window
            "monetary_365d": rng.permutation(np.arange(n, dtype=float)) * 10,
            "orders_lifetime": 5,
            "tenure_days": 500,
            "discount_rate_365d": 0.0,
            "return_rate_365d": 0.0,
            "complaints_90d": 0,
            "support_tickets_90d": 0,
            "visits_90d": 1,
            "email_opens_90d": 1,
            "segment_id": 0,
            "persona": "new",
            "churn_tier": "low",
            "conversion_tier": "cold",
            "churn_reasons": None,
            "conversion_reasons": None,
            "clv_value": 80.0,
            "clv_tier": "standard",
            "uplift_score": 0.0,
            "uplift_group": "lost_cause",
            "next_best": None,
            "next_best_list": None,
        }
    )


def test_quintile_edges_split_distinct_values_into_equal_fifths():
    frame = _population()
    payload = fit_cutpoints(CATALOG, frame)
    # 0..999 in fifths of 200, each edge half-way between the two distinct values it separates
    np.testing.assert_allclose(payload["cutpoints"]["recency"]["edges"], [199.5, 399.5, 599.5, 799.5])
    tags = CATALOG.evaluate(frame, payload)
    for score in ("rfm_r", "rfm_f", "rfm_m"):
        counts = tags[score].value_counts().sort_index()
        assert counts.index.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert counts.tolist() == [200] * 5, score
    # recency is reversed: the most recent fifth scores 5
    assert (tags.loc[frame["recency_days"] < 200, "rfm_r"] == 5).all()
    assert (tags.loc[frame["recency_days"] >= 800, "rfm_r"] == 1).all()


def test_every_customer_with_scores_gets_exactly_one_rfm_segment_and_high_value_is_two_fifths():
    frame = _population()
    tags = CATALOG.evaluate(frame, fit_cutpoints(CATALOG, frame))
    assert tags["rfm_segment"].notna().all()
    assert set(tags["rfm_segment"]) <= set(CATALOG.tag("rfm_segment").values or ())
    assert int(tags["high_value"].sum()) == 400  # rfm_m 4 or 5
    assert set(tags["lifecycle_stage"]) == {"active", "at_risk", "churned"}
    # lifecycle follows recency alone here: > 365 churned, > 90 at risk
    assert int((tags["lifecycle_stage"] == "churned").sum()) == 1000 - 366
    assert int((tags["lifecycle_stage"] == "at_risk").sum()) == 365 - 90


def test_cutpoints_fitted_on_skewed_counts_populate_every_score():
    # most customers bought once: plain quantiles would give equal edges and leave scores 1-2 empty
    frame = _population().assign(frequency_365d=[1] * 600 + [2] * 150 + [3] * 100 + [5] * 100 + [9] * 50)
    payload = fit_cutpoints(CATALOG, frame)
    edges = payload["cutpoints"]["frequency"]["edges"]
    assert edges == sorted(edges) and len(set(edges)) == 4
    scores = CATALOG.evaluate(frame, payload)["rfm_f"]
    assert sorted(scores.unique()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert scores[frame["frequency_365d"] == 9].eq(5).all()
    assert scores[frame["frequency_365d"] == 1].eq(1).all()

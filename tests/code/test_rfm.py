"""RFM scores and segments: tie-aware cut points, defined values for non-buyers, all 11 segments."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artifacts.catalog import contract_names, read_catalog
from models.tag_engine import fit_cutpoints, rank_edges

CATALOG = read_catalog(Path(__file__).resolve().parents[2] / "configs" / "tags.yaml")
SEGMENTS = CATALOG.tag("rfm_segment").values


def _scores(values, edges):
    return np.searchsorted(edges, values, side="right") + 1  # qcut: bisect_right + 1


def test_rank_edges_on_distinct_values_are_equal_fifths():
    values = np.arange(1000, dtype=float)
    edges = rank_edges(values, 5)
    assert edges == [199.5, 399.5, 599.5, 799.5]
    assert np.bincount(_scores(values, edges))[1:].tolist() == [200] * 5


def test_rank_edges_populate_every_score_under_heavy_ties():
    # 60 % bought once: plain quantiles give edges [1, 1, 2, 3] and scores 1-2 never occur
    values = np.array([1] * 600 + [2] * 150 + [3] * 100 + [4] * 80 + [7] * 50 + [12] * 20, dtype=float)
    edges = rank_edges(values, 5)
    scores = _scores(values, edges)
    assert set(scores) == {1, 2, 3, 4, 5}
    # equal values always share a score
    for v in np.unique(values):
        assert len(set(scores[values == v])) == 1
    assert edges == sorted(edges)


def test_rank_edges_with_fewer_distinct_values_than_bins_use_mid_ranks():
    values = np.array([0.0] * 80 + [1.0] * 20)
    scores = _scores(values, rank_edges(values, 5))
    # mid-rank of the zeros is 40 % -> score 2; of the ones 90 % -> score 5
    assert set(scores[values == 0]) == {2} and set(scores[values == 1]) == {5}
    one_value = _scores(np.array([3.0] * 10), rank_edges(np.array([3.0] * 10), 5))
    assert set(one_value) == {3}


def _hand_made() -> pd.DataFrame:
    """125 buyers of the window on a 5x5x5 grid (each value 25 times: exact quintiles), 10 customers who
    ordered only before the window, and 10 who never ordered."""
    recency = [5.0, 30.0, 90.0, 180.0, 300.0]
    frequency = [1, 2, 4, 7, 12]
    monetary = [20.0, 80.0, 200.0, 600.0, 2000.0]
    rows = [
        {"recency_days": r, "frequency_365d": f, "monetary_365d": m, "orders_lifetime": f + 1}
        for r, f, m in itertools.product(recency, frequency, monetary)
    ]
    rows += [
        {"recency_days": 400.0 + i, "frequency_365d": 0, "monetary_365d": 0.0, "orders_lifetime": 3}
        for i in range(10)
    ]
    rows += [{"recency_days": None, "frequency_365d": 0, "monetary_365d": 0.0, "orders_lifetime": 0}] * 10
    frame = pd.DataFrame(rows)
    frame["customer_id"] = [f"P{i:012d}" for i in range(len(frame))]
    filler = {
        "tenure_days": 400.0,
        "discount_rate_365d": 0.0,
        "return_rate_365d": 0.0,
        "complaints_90d": 0,
        "support_tickets_90d": 0,
        "visits_90d": 1,
        "email_opens_90d": 1,
        "segment_id": 0,
        "persona": "regular",
    }
    for name in CATALOG.required_inputs:
        if name not in frame.columns:
            frame[name] = filler.get(name)
    return frame


def test_every_one_of_the_11_rfm_segments_is_reachable():
    frame = _hand_made()
    payload = fit_cutpoints(CATALOG, frame)
    # fitted on the 125 buyers of the window only
    assert {c["rows"] for c in payload["cutpoints"].values()} == {125}
    tags = CATALOG.evaluate(frame, payload)
    buyers = frame["frequency_365d"] > 0
    for score in ("rfm_r", "rfm_f", "rfm_m"):
        assert tags.loc[buyers, score].value_counts().sort_index().tolist() == [25] * 5, score
    assert set(tags.loc[buyers, "rfm_segment"]) | {"lost"} == set(SEGMENTS)
    assert set(tags["rfm_segment"].dropna()) == set(SEGMENTS)


def test_non_buyers_get_defined_values_not_a_middle_score():
    frame = _hand_made()
    tags = CATALOG.evaluate(frame, fit_cutpoints(CATALOG, frame))
    lapsed = (frame["frequency_365d"] == 0) & (frame["orders_lifetime"] > 0)
    prospects = frame["orders_lifetime"] == 0
    for score in ("rfm_r", "rfm_f", "rfm_m"):
        assert tags.loc[lapsed, score].eq(1).all(), score
        assert tags.loc[prospects, score].isna().all(), score
    assert tags.loc[lapsed, "rfm_segment"].eq("lost").all()
    assert tags.loc[prospects, "rfm_segment"].isna().all()


def test_a_cut_point_population_must_be_a_condition_on_known_features():
    from core.errors import CatalogError
    from models.tag_engine import parse_catalog

    raw = {
        "version": "t",
        "cutpoints": {"m": {"feature": "monetary_365d", "bins": 5, "population": "nope > 0"}},
        "tags": [
            {
                "key": "m",
                "description": "d",
                "kind": "rule",
                "type": "number",
                "expr": "qcut(monetary_365d, 'm')",
                "cadence": "daily",
                "owner": "o",
                "version": 1,
                "crm_field": "f",
            }
        ],
    }
    with pytest.raises(CatalogError, match=r"cutpoints\.m\.population column 1: .*nope"):
        parse_catalog(raw, **contract_names())

"""Sampling of large training sets (training.trainsets.sample_split): whole customers, the same ones in
every split, deterministic for a seed, and the full frame whenever it fits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.splits import TimeSplit
from training.trainsets import customer_share, sample_split


def _frame(customers: int, snapshots: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"P{i:06d}" for i in range(customers)]
    rows = [(c, pd.Timestamp(s, tz="UTC")) for s in snapshots for c in ids if rng.random() < 0.9]
    frame = pd.DataFrame(rows, columns=["customer_id", "event_timestamp"])
    frame["label"] = rng.integers(0, 2, len(frame))
    return frame


def _split() -> TimeSplit:
    return TimeSplit(
        train=_frame(2000, ["2024-01-01", "2024-04-01", "2024-07-01"], 1),
        valid=_frame(2000, ["2024-10-01"], 2),
        test=_frame(2000, ["2025-01-01"], 3),
        horizon_days=90,
    )


def test_the_full_frame_when_it_fits() -> None:
    split = _split()
    same, sampling = sample_split(split, max_train_rows=len(split.train), seed=7)
    assert same is split and sampling.full and sampling.fraction == 1.0
    assert sampling.statement().startswith("full frame")
    assert sampling.params()["sampling.method"] == "full frame"


def test_whole_customers_sampled_alike_in_every_split() -> None:
    split = _split()
    budget = len(split.train) // 4
    sampled, sampling = sample_split(split, max_train_rows=budget, seed=7)
    assert abs(len(sampled.train) - budget) < 0.1 * budget
    assert sampling.used["train"] == len(sampled.train) and sampling.available["train"] == len(split.train)
    kept = set(sampled.train["customer_id"])
    for name in ("train", "valid", "test"):
        before, after = getattr(split, name), getattr(sampled, name)
        # a kept customer keeps every row it had; the others keep none
        assert set(after["customer_id"]) == set(before["customer_id"]) & kept
        assert len(after) == before["customer_id"].isin(kept).sum()
    statement = sampling.statement()
    assert "sampled 25" in statement[:12] or "sampled 2" in statement  # the share is stated
    assert f"{len(sampled.train):,} of {len(split.train):,}" in statement
    params = sampling.params()
    assert params["sampling.test_rows_used"] == len(sampled.test) < params["sampling.test_rows_available"]


def test_sampling_is_deterministic_for_a_seed() -> None:
    ids = pd.Series([f"P{i:06d}" for i in range(5000)])
    a, b = customer_share(ids, seed=7), customer_share(ids, seed=7)
    assert (a == b).all() and ((a >= 0) & (a < 1)).all()
    assert abs(a.mean() - 0.5) < 0.02  # about uniform
    other = customer_share(ids, seed=8)
    assert (a != other).mean() > 0.99
    split = _split()
    first, _ = sample_split(split, max_train_rows=1000, seed=7)
    again, _ = sample_split(split, max_train_rows=1000, seed=7)
    pd.testing.assert_frame_equal(first.train, again.train)


def _segment_data(customers: int):
    from training.trainsets import SegmentData

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "customer_id": [f"P{i:06d}" for i in range(customers)],
            "recency_days": rng.exponential(60, customers),
            "frequency_365d": rng.poisson(3, customers) + 1,
            "monetary_365d": rng.gamma(2.0, 50.0, customers),
        }
    )
    features = ["recency_days", "frequency_365d", "monetary_365d"]
    return SegmentData("segmentation_v1", frame, features, pd.Timestamp("2025-01-01", tz="UTC"))


def _settings(max_fit_customers: int):
    from configs.settings import load_settings

    return load_settings(
        training={"seed": 7, "segments": {"k": 3, "max_fit_customers": max_fit_customers}},
    )


def test_segments_below_the_limit_fit_on_every_customer_as_before() -> None:
    from models.segmentation import fit_segmentation
    from training.jobs import fit_segments

    data = _segment_data(1500)
    model, sampling = fit_segments(data, _settings(1500))
    direct = fit_segmentation(X=data.frame, features=data.features, k=3, k_range=(3, 8), seed=7)
    np.testing.assert_array_equal(model.centroids, direct.centroids)
    assert sampling.full and sampling.used == {"fit": 1500} and model.metadata["n_train"] == 1500


def test_segments_above_the_limit_fit_on_a_stated_share_of_customers() -> None:
    from training.jobs import fit_segments

    data = _segment_data(1500)
    model, sampling = fit_segments(data, _settings(500))
    used = sampling.used["fit"]
    assert 400 < used < 600 and model.metadata["n_train"] == used and sampling.available == {"fit": 1500}
    params = sampling.params()
    assert params["sampling.max_fit_customers"] == 500 and params["sampling.seed"] == 7
    assert params["sampling.fit_rows_used"] == used and 0.3 < params["sampling.fraction"] < 0.4
    assert "training.segments.max_fit_customers=500" in sampling.statement()

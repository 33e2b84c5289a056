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

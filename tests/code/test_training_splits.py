"""Time split: train on earlier snapshots, validate and test on later ones, nothing leaks."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import ValidationFailed
from training.splits import TimeSplit, assert_no_leak, time_split

START = pd.Timestamp("2025-01-01", tz="UTC")
SNAPS = [START + pd.Timedelta(days=30 * i) for i in range(10)]  # s0 .. s9, 30 days apart


def labels(customers=("a", "b", "c")) -> pd.DataFrame:
    rows = [(c, t, i % 2) for t in SNAPS for i, c in enumerate(customers)]
    return pd.DataFrame(rows, columns=["customer_id", "event_timestamp", "label"])


def test_split_purges_label_windows() -> None:
    split = time_split(labels(), horizon_days=90)
    # test = s9; valid = latest s with s + 90d <= s9 -> s6; train = s + 90d <= s6 -> s0..s3
    assert set(split.test["event_timestamp"]) == {SNAPS[9]}
    assert set(split.valid["event_timestamp"]) == {SNAPS[6]}
    assert set(split.train["event_timestamp"]) == set(SNAPS[:4])
    assert len(split.train) == 12 and len(split.valid) == 3 and len(split.test) == 3
    # the same customer's label window in train ends before its valid and test feature times
    for name in ("valid", "test"):
        late = getattr(split, name)["event_timestamp"].min()
        assert (split.train["event_timestamp"] + pd.Timedelta(days=90)).max() <= late
    window = split.window()
    assert window["train_rows"] == 12 and window["test_first_snapshot"] == SNAPS[9].isoformat()


def test_naive_split_is_caught_as_a_leak() -> None:
    frame = labels()
    ts = frame["event_timestamp"]
    naive = TimeSplit(
        train=frame[ts < SNAPS[8]], valid=frame[ts == SNAPS[8]], test=frame[ts == SNAPS[9]], horizon_days=90
    )
    with pytest.raises(
        ValidationFailed, match=r"time leak: customer a has a train label window from 2025-06-30"
    ):
        assert_no_leak(naive)


def test_leak_only_counts_the_same_customer() -> None:
    frame = labels()
    ts = frame["event_timestamp"]
    # train rows only for 'a', test only for 'b', even though their windows overlap in time
    split = TimeSplit(
        train=frame[(ts == SNAPS[8]) & (frame["customer_id"] == "a")],
        valid=frame.iloc[0:0],
        test=frame[(ts == SNAPS[9]) & (frame["customer_id"] == "b")],
        horizon_days=90,
    )
    assert_no_leak(split)


def test_too_few_snapshots_says_why() -> None:
    frame = labels()
    short = frame[frame["event_timestamp"].isin(SNAPS[:3])]
    with pytest.raises(ValidationFailed, match="none ends its 90-day label window"):
        time_split(short, horizon_days=90)
    with pytest.raises(ValidationFailed, match="no labelled snapshots"):
        time_split(frame.iloc[0:0], horizon_days=90)

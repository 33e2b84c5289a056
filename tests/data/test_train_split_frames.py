"""Train, valid and test come from one point-in-time retrieval (`training.trainsets.split_frames`): each
split gets exactly the features a retrieval of its own gives, with its rows, order and index."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.data.test_feast_pit import CASES, pit_store  # noqa: F401 - the module's Feast store fixture
from tests.feast_support import utc
from training.splits import TimeSplit
from training.trainsets import split_frames


def _split() -> TimeSplit:
    rows = pd.DataFrame(
        {
            "customer_id": [c[0] for c in CASES],
            "event_timestamp": [utc(c[1]) for c in CASES],
            "label": np.arange(len(CASES)) % 2,
        }
    )
    # uneven parts with their own (non-default) indexes, the first one with no features at all
    parts = [rows.iloc[[0, 7]], rows.iloc[1:6], rows.iloc[[8, 9, 10, 11, 6]]]
    parts = [p.set_axis(pd.Index(np.arange(len(p))[::-1] + 10 * i), axis=0) for i, p in enumerate(parts)]
    return TimeSplit(train=parts[0], valid=parts[1], test=parts[2], horizon_days=30)


def test_one_retrieval_gives_each_split_its_own_features(pit_store):  # noqa: F811
    from features import feast_io

    _, store = pit_store
    split = _split()
    frames = split_frames(store, split, service="churn_v1")
    for name in ("train", "valid", "test"):
        alone = feast_io.training_frame(store, entity_df=getattr(split, name), service="churn_v1")
        got = frames[name]
        assert got.index.equals(alone.index) and list(got.columns) == list(alone.columns)
        # the same values; a count column a split has no gap in may come back float from the joint read
        pd.testing.assert_frame_equal(got, alone, check_dtype=False)
        for column in got.columns:
            same = got[column].dtype == alone[column].dtype
            assert same or (alone[column].dtype == "int64" and got[column].dtype == "float64"), column
    assert frames["train"].drop(columns=["customer_id", "event_timestamp", "label"]).isna().all().all()

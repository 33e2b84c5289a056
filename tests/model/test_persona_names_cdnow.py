"""Persona names on real orders (CDNOW, read in place): whatever the seed and k, the segment whose
customers bought most recently and most often is never named at_risk, hibernating or lost."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import compute_feature_tables
from models.personas import LAPSED
from models.segmentation import fit_segmentation
from training.datasets import shared_data_dir

CDNOW = shared_data_dir() / "cdnow" / "CDNOW_master.txt"
FEATURES = [
    "recency_days",
    "frequency_90d",
    "frequency_365d",
    "monetary_90d",
    "monetary_365d",
    "avg_order_value_365d",
    "orders_lifetime",
    "monetary_lifetime",
    "tenure_days",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CDNOW.is_file(), reason=f"CDNOW not found at {CDNOW} (set PERSONA_SHARED_DATA)"),
]


@pytest.fixture(scope="module")
def snapshot() -> pd.DataFrame:
    raw = pd.read_csv(CDNOW, sep=r"\s+", dtype={"customer_id": str, "date": str})
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(raw))],
            "customer_id": raw["customer_id"],
            "order_ts": pd.to_datetime(raw["date"], format="%Y%m%d", utc=True).astype("datetime64[us, UTC]"),
            "amount": raw["dollar_value"].astype(float),
            "discount": 0.0,
            "quantity": raw["number_of_cds"],
            "category": None,
            "is_returned": False,
            "is_cancelled": False,
        }
    )
    customers = pd.DataFrame({"customer_id": orders["customer_id"].unique(), "consent_profiling": True})
    built = compute_feature_tables(
        customers=customers,
        orders=orders,
        events=None,
        leads=None,
        snapshots=[pd.Timestamp("1998-07-01", tz="UTC")],
        created=pd.Timestamp("1998-07-01", tz="UTC"),
    )
    return built.tables["customer_transactions"]


@pytest.mark.parametrize(("seed", "k"), [(7, None), (1, 3), (2, 4), (3, 5), (4, 6)])
def test_cdnow_most_recent_and_most_frequent_segment_is_not_lapsed(snapshot, seed, k) -> None:
    model = fit_segmentation(X=snapshot, features=FEATURES, k=k, k_range=(3, 6), seed=seed)
    ids = model.predict(snapshot)
    per = (
        snapshot.assign(segment=ids)
        .groupby("segment")
        .agg(recency=("recency_days", "median"), orders=("orders_lifetime", "median"))
    )
    most_recent = int(per["recency"].idxmin())
    assert model.persona_names[most_recent] not in LAPSED, (per, model.persona_names)
    if most_recent == int(per["orders"].idxmax()):
        assert model.persona_names[most_recent] not in LAPSED
    assert sorted(model.persona_names) == list(range(model.k))
    assert not any(p.isdigit() for n in model.persona_names.values() for p in n.split("_"))

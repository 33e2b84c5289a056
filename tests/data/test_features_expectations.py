"""Data expectations of the feature tables built from generated + ingested data (small, realistic)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.build import FEATURE_TABLES, KEY_COLUMNS, build_features


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from configs.settings import load_settings
    from features.ingest import run_ingest
    from features.synthetic.generate import generate

    data_dir = tmp_path_factory.mktemp("features_expectations") / "data"
    settings = load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})
    generate(settings.generator.model_copy(update={"customers": 400}), out=data_dir / "raw")
    run_ingest(settings)
    snapshots = [date(2024, 10, 1), date(2025, 4, 1), date(2025, 10, 1)]
    report = build_features(settings, snapshots=snapshots)
    tables = {name: pd.read_parquet(path) for name, (path, _) in report.written.items()}
    customers = pd.read_parquet(data_dir / "clean" / "customers.parquet")
    return tables, customers


def test_every_table_is_built_on_the_same_rows(built):
    tables, _ = built
    assert set(tables) == set(FEATURE_TABLES)
    keys = [t[["customer_id", "event_timestamp"]] for t in tables.values()]
    for other in keys[1:]:
        pd.testing.assert_frame_equal(keys[0], other)
    assert not keys[0].duplicated().any()
    assert keys[0].equals(keys[0].sort_values(["event_timestamp", "customer_id"], ignore_index=True))


def test_only_consenting_customers_known_before_the_snapshot(built):
    tables, customers = built
    frame = tables["customer_transactions"].merge(customers, on="customer_id", how="left")
    assert frame["consent_profiling"].all()
    assert (frame["first_seen_ts"] < frame["event_timestamp"]).all()
    withdrawn = set(customers.loc[~customers["consent_profiling"], "customer_id"])
    assert withdrawn, "the generator should withdraw some consents"
    for table in tables.values():
        assert withdrawn.isdisjoint(table["customer_id"])


def test_no_raw_pii_in_any_table(built):
    tables, _ = built
    for table in tables.values():
        assert not {"full_name", "phone", "email", "city"} & set(table.columns)
        assert table["customer_id"].str.fullmatch(r"P[0-9a-f]{12}").all()
        assert list(table.columns[:3]) == list(KEY_COLUMNS)


def test_counts_rates_and_days_are_in_range(built):
    tables, _ = built
    tx, eng, leads = tables["customer_transactions"], tables["customer_engagement"], tables["customer_leads"]
    assert (tx["frequency_30d"] <= tx["frequency_90d"]).all()
    assert (tx["frequency_90d"] <= tx["frequency_365d"]).all()
    assert (tx["frequency_365d"] <= tx["orders_lifetime"]).all()
    assert (tx["monetary_365d"] <= tx["monetary_lifetime"] + 1e-6).all()
    for rate in ("return_rate_365d", "discount_rate_365d"):
        values = tx[rate].dropna()
        assert ((values >= 0) & (values <= 1)).all(), rate
    # recency is NaN exactly when there was no purchase; a purchase is never after tenure began
    assert (tx["recency_days"].isna() == tx["orders_lifetime"].eq(0)).all()
    has = tx["recency_days"].notna()
    assert (tx.loc[has, "recency_days"] > 0).all()
    assert (tx.loc[has, "recency_days"] <= tx.loc[has, "tenure_days"]).all()
    assert tx["orders_lifetime"].gt(0).mean() > 0.5  # most known customers have ordered
    assert (eng["visits_30d"] <= eng["visits_90d"]).all()
    assert (eng["complaints_90d"] <= eng["complaints_365d"]).all()
    assert (eng["days_since_last_event"].dropna() > 0).all()
    assert eng["visits_90d"].sum() > 0
    assert leads["is_open_lead"].isin([0, 1]).all()
    assert (leads["lead_source"].isna() == leads["lead_age_days"].isna()).all()
    for table in tables.values():
        numeric = table.select_dtypes("number")
        assert np.isfinite(numeric.to_numpy(dtype="float64")[~numeric.isna().to_numpy()]).all()

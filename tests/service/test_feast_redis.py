"""Online store on a real Redis: materialize, then read online (the configuration of configs/redis.yaml)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest

from tests.feast_support import (
    assert_same_read,
    feature_table,
    redis_server,
    utc,
    write_edge_rows,
    write_tables,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip(
            "redis-server is not installed here; `make services` (scripts/install-services.sh) installs it"
        )
    with redis_server(tmp_path / "redis") as url:
        yield url


def test_materialize_and_read_online_from_redis(redis_url, data_dir):
    from configs.settings import PROJECT_ROOT, load_settings
    from features import feast_io

    settings = load_settings(
        PROJECT_ROOT / "configs" / "redis.yaml",
        data_dir=str(data_dir),
        feast={"redis_connection_string": redis_url},
    )
    assert settings.feast.online_store == "redis"
    write_tables(
        settings.path(settings.feast.source_dir),
        {
            "customer_transactions": feature_table(
                "customer_transactions",
                [("P1", "2025-01-01", 1), ("P1", "2025-01-31", 2), ("P2", "2025-01-31", 3)],
            ),
            "customer_engagement": feature_table("customer_engagement", [("P1", "2025-01-31", 4)]),
        },
    )
    feast_io.apply_repo(settings)
    stats = feast_io.materialize(settings, end=datetime(2025, 2, 10, tzinfo=UTC))
    assert stats.per_view == {"customer_transactions": 2, "customer_engagement": 1}

    store = feast_io.get_store(settings)
    assert store.config.online_store.type == "redis"
    result = feast_io.online_features(
        store, customer_ids=["P1", "P404", "P2"], service="churn_v1", as_of=datetime(2025, 2, 10, tzinfo=UTC)
    )
    assert result.values.loc["P1", "recency_days"] == 2
    assert result.values.loc["P2", "monetary_lifetime"] == 3
    assert result.values.loc["P1", "visits_90d"] == 4
    assert result.status.loc["P2", "visits_90d"] == "not_found"
    assert result.status.loc["P1"].eq("present").all()
    assert result.unknown_ids == ["P404"]
    assert result.freshness.loc["P1", "customer_transactions"] == utc("2025-01-31")

    # Nothing was written to the SQLite online store: Redis holds the values.
    assert not settings.path(settings.feast.sqlite_path).exists()
    import redis

    host, port = redis_url.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() >= 2

    # consent withdrawal / forget: one customer's online rows go, the others stay
    assert feast_io.delete_online(store, ["P1"]) == 1  # one Redis hash holds every view of an entity
    after = feast_io.online_features(
        store, customer_ids=["P1", "P2"], service="churn_v1", as_of=datetime(2025, 2, 10, tzinfo=UTC)
    )
    assert after.unknown_ids == ["P1"]
    assert after.values.loc["P2", "monetary_lifetime"] == 3


@pytest.mark.parametrize("customers", [3, 120])  # one value at a time, and the columnar decoder
def test_the_direct_redis_read_equals_feasts_online_read(redis_url, data_dir, customers):
    """One pipelined HMGET per customer for every view, decoded a column at a time, gives exactly what
    Feast's `online_read` gives: values of every kind, rows missing or stale, unknown and repeated ids."""
    import numpy as np

    from configs.settings import PROJECT_ROOT, load_settings
    from features import feast_io

    settings = load_settings(
        PROJECT_ROOT / "configs" / "redis.yaml",
        data_dir=str(data_dir),
        feast={"redis_connection_string": redis_url},
    )
    write_tables(
        settings.path(settings.feast.source_dir),
        {
            "customer_transactions": feature_table(
                "customer_transactions", [("P1", "2025-01-31", 2), ("P2", "2025-01-31", 3)]
            ),
            "customer_engagement": feature_table("customer_engagement", [("P1", "2025-01-31", 4)]),
            "customer_profile": feature_table("customer_profile", [("P2", "2025-01-31", 1)]),
        },
    )
    feast_io.apply_repo(settings)
    feast_io.materialize(settings, end=datetime(2025, 2, 10, tzinfo=UTC))
    store = feast_io.get_store(settings)
    written = write_edge_rows(store, "customer_profile", customers=customers, as_of=utc("2025-02-10"))
    written += write_edge_rows(store, "customer_engagement", customers=customers, as_of=utc("2025-02-10"))
    services = ("churn_v1", "conversion_v1", "segmentation_v1")
    plan = feast_io._merged_plan(store, services)
    features_of: dict[str, list[str]] = {}
    for name, view in plan.view_of.items():
        features_of.setdefault(view, []).append(name)
    ids = [*written, "P404", written[0], "P1", "P2", written[-1], written[0]]
    direct = feast_io._read_redis(store, plan, features_of, ids)
    assert_same_read(direct, feast_io._read_provider(store, plan, features_of, ids))
    assert np.isnan(direct["customer_engagement"][1]["visits_30d"]).any()
    assert direct["customer_transactions"][1]["monetary_lifetime"][ids.index("P2")] == 3

    result = feast_io.online_features(
        store, customer_ids=ids, service=services, as_of=datetime(2025, 2, 10, tzinfo=UTC)
    )
    assert result.columns["region"].tolist() == direct["customer_profile"][1]["region"].tolist()
    assert "P404" in result.unknown_ids

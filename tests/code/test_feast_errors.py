"""Bad input and missing set-up give FeatureStoreError naming the file, column, row or service."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import FeatureStoreError
from tests.feast_support import feature_table, utc, write_tables

ROWS = [("P1", "2025-01-31", 1)]


def _write(settings, tables: dict[str, pd.DataFrame]) -> None:
    write_tables(settings.path(settings.feast.source_dir), tables)


def test_apply_without_feature_tables_names_the_file_and_hints_at_build(settings):
    from features import feast_io

    with pytest.raises(FeatureStoreError) as info:
        feast_io.apply_repo(settings)
    assert "customer_transactions.parquet" in info.value.message
    assert "persona features build" in info.value.hint


def test_apply_names_a_missing_column(settings):
    from features import feast_io

    table = feature_table("customer_transactions", ROWS).drop(columns=["monetary_90d"])
    _write(settings, {"customer_transactions": table})
    with pytest.raises(
        FeatureStoreError, match=r"customer_transactions\.parquet: column 'monetary_90d' missing"
    ):
        feast_io.apply_repo(settings)


def test_apply_refuses_nanosecond_timestamps(settings):
    from features import feast_io

    table = feature_table("customer_transactions", ROWS)
    table["event_timestamp"] = table["event_timestamp"].astype("datetime64[ns, UTC]")
    _write(settings, {"customer_transactions": table})
    with pytest.raises(FeatureStoreError, match="microseconds"):
        feast_io.apply_repo(settings)


def test_materialize_before_apply_hints_at_apply(settings):
    from features import feast_io

    with pytest.raises(FeatureStoreError) as info:
        feast_io.materialize(settings)
    assert "persona features apply" in info.value.hint


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    from configs.settings import load_settings
    from features import feast_io

    settings = load_settings(data_dir=str(tmp_path_factory.mktemp("feast_errors")))
    _write(settings, {"customer_transactions": feature_table("customer_transactions", ROWS)})
    feast_io.apply_repo(settings)
    return settings


def test_unknown_service_lists_the_registered_ones(applied):
    from features import feast_io

    with pytest.raises(FeatureStoreError) as info:
        feast_io.service_features(applied, "churn_v9")
    assert "'churn_v9'" in info.value.message
    assert "churn_v1" in info.value.message and "segmentation_v1" in info.value.message


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        (pd.DataFrame({"customer_id": ["P1"]}), "column 'event_timestamp' missing"),
        (
            pd.DataFrame({"customer_id": ["P1", None], "event_timestamp": [utc("2025-02-01")] * 2}),
            "row 1 has no customer_id",
        ),
        (pd.DataFrame({"customer_id": ["P1"], "event_timestamp": ["not a date"]}), "not a timestamp"),
        (
            pd.DataFrame(
                {"customer_id": ["P1"], "event_timestamp": [utc("2025-02-01")], "recency_days": [1]}
            ),
            "'recency_days' has the name of a feature",
        ),
    ],
)
def test_bad_entity_frames_are_named(applied, entity, expected):
    from features import feast_io

    with pytest.raises(FeatureStoreError, match=expected):
        feast_io.training_frame(applied, entity_df=entity, service="churn_v1")


def test_training_with_a_service_whose_table_is_absent_names_the_table(applied):
    from features import feast_io

    entity = pd.DataFrame({"customer_id": ["P1"], "event_timestamp": [utc("2025-02-01")]})
    with pytest.raises(FeatureStoreError, match=r"customer_engagement\.parquet"):
        feast_io.training_frame(applied, entity_df=entity, service="churn_v1")


def test_online_read_from_an_unreachable_redis_is_a_feature_store_error(applied):
    from configs.settings import load_settings
    from features import feast_io

    settings = load_settings(
        data_dir=str(applied.data_dir),
        feast={"online_store": "redis", "redis_connection_string": "127.0.0.1:1"},
    )
    with pytest.raises(FeatureStoreError, match="online read for service 'churn_v1' failed"):
        feast_io.online_features(settings, customer_ids=["P1"], service="churn_v1")

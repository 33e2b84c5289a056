"""Feast's Spark offline store (`engine: spark`) gives what the DuckDB one gives (issue 17).

The same generated feature tables, applied once per engine: point-in-time training frames equal row for
row, and materialization through Spark writes the same online rows, byte for byte. Spark runs for real
in local mode (Java 17: `make services` installs it when missing).
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.data.test_materialize_batched import SNAPSHOTS, messy_tables
from tests.feast_support import write_tables

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (make services)")

END = datetime(2025, 3, 20, tzinfo=UTC)


def _applied(root: Path, tables: dict[str, pd.DataFrame], engine: str):
    from configs.settings import load_settings
    from features import feast_io

    settings = load_settings(data_dir=str(root), engine=engine)
    # microsecond times, as `persona features build` writes them (Spark cannot read nanoseconds)
    tables = {
        n: t.astype({"event_timestamp": "datetime64[us, UTC]", "created": "datetime64[us, UTC]"})
        for n, t in tables.items()
    }
    write_tables(settings.path(settings.feast.source_dir), tables)
    feast_io.apply_repo(settings)
    return settings


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    tables = messy_tables(customers=80)
    root = tmp_path_factory.mktemp("feast_spark")
    return tables, _applied(root / "duckdb", tables, "duckdb"), _applied(root / "spark", tables, "spark")


def _entity_frame(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Customers at times before the first snapshot, between snapshots, on a snapshot, and past the
    TTL after the last one; some customers twice, one unknown; labels carried through."""
    rng = np.random.default_rng(11)
    ids = sorted(tables["customer_transactions"]["customer_id"].unique())
    times = [pd.Timestamp(s, tz="UTC") for s in SNAPSHOTS]
    moments = [times[0] - pd.Timedelta(days=3), times[1], times[1] + pd.Timedelta(days=10)]
    moments += [times[2] + pd.Timedelta(hours=5), times[3] + pd.Timedelta(days=60)]
    rows = [(c, moments[rng.integers(len(moments))]) for c in ids for _ in range(2)]
    rows.append(("P-unknown", times[2]))
    frame = pd.DataFrame(rows, columns=["customer_id", "event_timestamp"])
    frame["label"] = rng.integers(0, 2, len(frame))
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.mark.slow  # a Spark JVM in local mode: about a minute on 2 shared cores
@pytest.mark.parametrize("service", ["churn_v1", "conversion_v1"])
def test_spark_offline_store_training_frame_equals_duckdb(applied, service):
    from features import feast_io

    tables, on_duckdb, on_spark = applied
    spark_store = feast_io.get_store(on_spark)
    assert spark_store.config.offline_store.type == "spark"
    source = spark_store.get_feature_view("customer_transactions").batch_source
    assert type(source).__name__ == "SparkSource" and source.path.endswith("customer_transactions.parquet")

    entity = _entity_frame(tables)
    expected = feast_io.training_frame(on_duckdb, entity_df=entity, service=service)
    got = feast_io.training_frame(spark_store, entity_df=entity, service=service)
    assert len(got) == len(entity)
    features = feast_io.service_features(spark_store, service)
    # features really vary, and some rows have none (before the first snapshot, past the TTL, unknown)
    assert expected[features[0]].notna().sum() > len(entity) // 3
    assert expected[features[0]].isna().sum() > 10
    for name in features:  # dtypes may differ by engine (ints with nulls): values may not
        want, have = expected[name], got[name]
        if want.dtype == object or have.dtype == object:
            assert want.where(want.notna(), None).tolist() == have.where(have.notna(), None).tolist(), name
        else:
            np.testing.assert_array_equal(
                want.to_numpy(dtype=float), have.to_numpy(dtype=float), err_msg=name
            )
    pd.testing.assert_frame_equal(got[list(entity.columns)], entity)


def _online_rows(settings) -> dict[str, list[tuple]]:
    with sqlite3.connect(settings.path(settings.feast.sqlite_path)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=lambda r: r[:2]) for n in names}


@pytest.mark.slow
def test_materialize_through_spark_writes_the_same_online_rows(applied):
    from features import feast_io

    tables, on_duckdb, on_spark = applied
    ours = feast_io.materialize(on_spark, end=END)
    theirs = feast_io.materialize(on_duckdb, end=END)
    assert ours.per_view == theirs.per_view
    assert min(ours.per_view.values()) > 10
    expected, got = _online_rows(on_duckdb), _online_rows(on_spark)
    assert set(got) == set(expected) and len(got) == 4
    for table in expected:
        assert got[table] == expected[table], table
    assert not any((on_spark.data_dir / "tmp" / "materialize").iterdir())  # staged parts removed


def test_a_registry_applied_for_duckdb_is_refused_under_spark(applied, tmp_path):
    from configs.settings import load_settings
    from core.errors import FeatureStoreError
    from features import feast_io

    tables, on_duckdb, _ = applied
    as_spark = load_settings(data_dir=str(on_duckdb.data_dir), engine="spark")
    entity = _entity_frame(tables).head(5)
    with pytest.raises(FeatureStoreError, match="persona features apply"):
        feast_io.training_frame(as_spark, entity_df=entity, service="churn_v1")

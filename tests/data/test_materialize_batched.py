"""Batched materialization (features/materialize.py) writes exactly what Feast's own `materialize` writes:
the same online rows, byte for byte, and the same materialized interval in the registry, in any batch
size; latest row per customer, ties broken by the `created` column as Feast's offline store does."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.feast_support import synthetic_tables, utc, write_tables

END = datetime(2025, 3, 20, tzinfo=UTC)
SNAPSHOTS = ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]  # the last one after END


def messy_tables(customers: int = 120) -> dict[str, pd.DataFrame]:
    """Random tables with missing values, customers absent from some snapshots, and re-computed rows
    (same customer and snapshot, a later `created`) that must win."""
    tables = synthetic_tables(customers=customers, snapshots=SNAPSHOTS, seed=3)
    rng = np.random.default_rng(4)
    out = {}
    for name, frame in tables.items():
        frame = frame.sample(frac=0.8, random_state=5).reset_index(drop=True)  # gaps per customer
        for column in frame.columns[3:]:
            missing = rng.random(len(frame)) < 0.1
            if frame[column].dtype == object:
                frame.loc[missing, column] = None
            elif frame[column].dtype.kind == "f":
                frame.loc[missing, column] = np.nan
        again = frame.sample(frac=0.1, random_state=6).copy()
        again["created"] = again["created"] + pd.Timedelta(hours=1)
        for column in frame.columns[3:]:
            if frame[column].dtype.kind == "f":
                again[column] = again[column] + 1000.0
        out[name] = pd.concat([frame, again], ignore_index=True)
    return out


def _applied(root: Path, tables: dict[str, pd.DataFrame]):
    from configs.settings import load_settings
    from features import feast_io

    settings = load_settings(data_dir=str(root))
    write_tables(settings.path(settings.feast.source_dir), tables)
    feast_io.apply_repo(settings)
    return settings


def _online_rows(settings) -> dict[str, list[tuple]]:
    path = settings.path(settings.feast.sqlite_path)
    with sqlite3.connect(path) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            name: sorted(con.execute(f'SELECT * FROM "{name}"').fetchall(), key=lambda r: (r[0], r[1]))
            for name in names
        }


def test_batched_writes_equal_feasts_own_materialize(tmp_path: Path) -> None:
    from features import feast_io

    tables = messy_tables()
    theirs = _applied(tmp_path / "feast", tables)
    ours = _applied(tmp_path / "ours", tables)
    store = feast_io.get_store(theirs)
    store.materialize(start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=END)
    stats = feast_io.materialize(ours, end=END)

    expected, got = _online_rows(theirs), _online_rows(ours)
    assert set(got) == set(expected) and len(got) == 4
    for table in expected:
        assert len(expected[table]) > 0
        assert got[table] == expected[table], table
    # rows = customers with a snapshot up to END, one each
    for name, frame in tables.items():
        assert stats.per_view[name] == frame.loc[frame["event_timestamp"] <= END, "customer_id"].nunique()
    ends = {v.name: v.most_recent_end_time for v in feast_io.get_store(ours).list_feature_views()}
    assert ends == {v.name: v.most_recent_end_time for v in feast_io.get_store(theirs).list_feature_views()}
    assert set(ends.values()) == {END}


def test_latest_row_per_customer_in_any_batch_size(tmp_path: Path) -> None:
    from features.materialize import latest_batches

    tables = messy_tables(customers=50)
    frame = tables["customer_transactions"]
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path, index=False)
    args = {
        "keys": ["customer_id"],
        "timestamp": "event_timestamp",
        "columns": ["recency_days", "frequency_30d"],
        "created": "created",
        "start": datetime(1970, 1, 1, tzinfo=UTC),
        "end": END,
    }
    whole = pd.concat([b.to_pandas() for b in latest_batches(path, batch_rows=10_000, **args)])
    small = list(latest_batches(path, batch_rows=7, **args))
    assert len(small) > 3 and max(b.num_rows for b in small) <= 7
    parts = pd.concat([b.to_pandas() for b in small])
    key = ["customer_id"]
    pd.testing.assert_frame_equal(
        parts.sort_values(key).reset_index(drop=True), whole.sort_values(key).reset_index(drop=True)
    )
    # the expected latest row, by hand: last snapshot up to END, then the latest `created`
    inside = frame[frame["event_timestamp"] <= END].sort_values(["event_timestamp", "created"])
    expected = inside.groupby("customer_id").tail(1).sort_values("customer_id")
    np.testing.assert_allclose(
        whole.sort_values("customer_id")["recency_days"].to_numpy(),
        expected["recency_days"].to_numpy(),
        equal_nan=True,
    )
    assert (whole["event_timestamp"] <= pd.Timestamp(END)).all()
    assert utc(SNAPSHOTS[-1]) not in set(whole["event_timestamp"])


def _redis_world(data_dir: Path, url: str, tables):  # type: ignore[no-untyped-def]
    """Settings on the Redis online store at `url`, with `tables` written and the Feast repo applied."""
    from configs.settings import PROJECT_ROOT, load_settings
    from features import feast_io

    settings = load_settings(
        PROJECT_ROOT / "configs" / "redis.yaml",
        data_dir=str(data_dir),
        feast={"redis_connection_string": url},
    )
    write_tables(settings.path(settings.feast.source_dir), tables)
    feast_io.apply_repo(settings)
    return settings


@pytest.mark.integration
def test_redis_rows_equal_feasts_own_materialize(tmp_path: Path) -> None:
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here; `make services` installs it")
    import redis

    from features import feast_io
    from tests.feast_support import redis_server

    tables = messy_tables(customers=60)
    with redis_server(tmp_path / "redis") as url:
        client = redis.Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))

        def dump() -> dict:
            return {key: client.hgetall(key) for key in client.keys("*")}

        dumps = []
        for name in ("feast", "ours"):
            settings = _redis_world(tmp_path / name, url, tables)
            if name == "feast":
                feast_io.get_store(settings).materialize(
                    start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=END
                )
            else:
                feast_io.materialize(settings, end=END)
            dumps.append(dump())
            client.flushall()
        assert len(dumps[0]) > 0
        assert dumps[1] == dumps[0]


def test_column_encoding_is_feasts_byte_for_byte() -> None:
    import pyarrow as pa
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.utils import _columns_to_proto_values
    from feast.value_type import ValueType

    from features.materialize import encode_column

    columns = {
        "d": (
            pa.array([0.0, 1.5, None, float("nan"), -0.0, float("inf"), 1e-300, -2.5e17]),
            ValueType.DOUBLE,
        ),
        "i": (pa.array([0, 5, None, -3, 2**40, -1, 300, -(2**40)]), ValueType.INT64),
        "s": (pa.array(["a", "", None, "ü北", "xyz", "a" * 200, "0", " "]), ValueType.STRING),
        "f": (pa.array([1, 2, None, 4, 5, 6, 7, 8], pa.int32()), ValueType.INT32),  # Feast's own path
    }
    batch = pa.record_batch({k: v for k, (v, _) in columns.items()})
    protos = _columns_to_proto_values(batch, [(k, t) for k, (_, t) in columns.items()], allow_missing=False)
    for name, (array, value_type) in columns.items():
        blobs, texts = encode_column(array, value_type)
        assert blobs == [v.SerializeToString() for v in protos[name]], name
        assert texts == [extract_text_and_num(v, False)[0] for v in protos[name]], name


@pytest.mark.integration
def test_redis_keeps_newer_rows_as_feast_does(tmp_path: Path) -> None:
    """Materializing an older interval over newer rows leaves the newer ones (Feast's rule on Redis: an
    older or equal event time is not written), in the same sequence for Feast's writer and ours."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here; `make services` installs it")
    import redis

    from features import feast_io
    from tests.feast_support import redis_server

    tables = messy_tables(customers=40)
    early, late = datetime(2025, 1, 20, tzinfo=UTC), END
    with redis_server(tmp_path / "redis") as url:
        client = redis.Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        dumps = []
        for name in ("feast", "ours"):
            settings = _redis_world(tmp_path / name, url, tables)
            for end in (late, early):  # the newer rows first, then an older interval over them
                if name == "feast":
                    feast_io.get_store(settings).materialize(
                        start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=end
                    )
                else:
                    feast_io.materialize(settings, end=end, full=True)
            dumps.append({key: client.hgetall(key) for key in client.keys("*")})
            client.flushall()
        assert len(dumps[0]) > 0
        assert dumps[1] == dumps[0]


def test_redis_timestamps_are_protobufs_byte_for_byte() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from features.materialize import _proto_timestamp, _timestamp_nanos

    moments = [
        datetime(2025, 12, 1),  # naive: UTC
        datetime(2025, 12, 1, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),  # both fields zero: no bytes at all
        datetime(1960, 5, 1, 0, 0, 0, 5, tzinfo=UTC),  # negative seconds: ten-byte varint
        datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
    ]
    for moment in moments:
        stamp = Timestamp()
        stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        nanos, blob = _proto_timestamp(moment)
        assert blob == stamp.SerializeToString(), moment
        assert nanos == _timestamp_nanos(blob) == stamp.seconds * 1_000_000_000 + stamp.nanos, moment

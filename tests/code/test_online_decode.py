"""The columnar decoder of Feast's online values gives, value by value, what parsing each ValueProto
with protobuf gives (the reader it replaces), on both its paths: one value at a time (few values) and
numpy over a whole column (many)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from features.online_decode import Blobs, numeric_column, object_column, scalar, timestamp_seconds
from tests.feast_support import edge_values


def _one_by_one(blobs: list[bytes | None], numeric: bool) -> np.ndarray:
    from feast.protos.feast.types.Value_pb2 import Value

    values = [None if b is None else scalar(Value.FromString(b)) for b in blobs]
    if numeric:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _blobs(numeric: bool, count: int, seed: int) -> list[bytes | None]:
    pool = [v.SerializeToString() for v in edge_values(numeric)]
    # not what Feast writes, but valid protobuf: over-long varints, a field given twice (last wins)
    pool += [b"\x20\x80\x00", b"\x20\x85\x80\x80\x00", b"\x29" + bytes(8) + b"\x20\x03", b"\x38\x02"]
    pool += [b"\x18\xff\xff\xff\xff\x0f", b"\x20" + _varint(2**62 + 12345)]
    rng = random.Random(seed)
    return [None if rng.random() < 0.1 else rng.choice(pool) for _ in range(count)]


@pytest.mark.parametrize("count", [0, 1, 5, 31, 32, 500])
@pytest.mark.parametrize("numeric", [True, False])
def test_a_column_decodes_to_what_protobuf_gives_value_by_value(count: int, numeric: bool) -> None:
    blobs = _blobs(numeric, count, seed=count)
    column = (numeric_column if numeric else object_column)(Blobs.from_list(blobs), count)
    expected = _one_by_one(blobs, numeric)
    assert column.dtype == expected.dtype
    if numeric:
        np.testing.assert_array_equal(column, expected)
        np.testing.assert_array_equal(np.signbit(column), np.signbit(expected))  # -0.0 stays -0.0
    else:
        assert [(type(v), v) for v in column.tolist()] == [(type(v), v) for v in expected.tolist()]


def test_blobs_land_on_their_rows_and_rows_without_a_blob_are_missing() -> None:
    from feast.protos.feast.types.Value_pb2 import Value

    values = [Value(double_val=float(i)).SerializeToString() for i in range(40)]
    rows = np.arange(40, dtype=np.int64)[::-1] * 2  # every other row of 80, in reverse
    lengths = np.array([len(v) for v in values], dtype=np.int64)
    blobs = Blobs(b"".join(values), np.cumsum(lengths) - lengths, lengths, rows)
    column = numeric_column(blobs, 80)
    assert column[rows].tolist() == [float(i) for i in range(40)]
    assert np.isnan(column[1::2]).all()


def test_timestamps_read_as_feasts_redis_store_reads_them() -> None:
    from datetime import UTC, datetime

    from google.protobuf.timestamp_pb2 import Timestamp

    stamps = [Timestamp(seconds=s, nanos=n) for s in (1_766_448_000, 1, 0, -86_400) for n in (0, 999_999_999)]
    blobs = [t.SerializeToString() for t in stamps] * 5 + [None, b""]
    got = timestamp_seconds(Blobs.from_list(blobs), len(blobs))
    expected = []
    for b in blobs:
        t = Timestamp.FromString(b or b"")
        moment = datetime.fromtimestamp(t.seconds + t.nanos / 1_000_000_000.0, tz=UTC)
        expected.append(int(moment.timestamp()))
    assert got.tolist() == expected


def test_entity_keys_are_serialized_as_feast_serializes_them() -> None:
    from types import SimpleNamespace

    from feast.infra.key_encoding_utils import serialize_entity_key

    from features import feast_io

    ids = ["P000123", "", "Zürich-ü", "x" * 300, "P000123"]
    store = SimpleNamespace(config=SimpleNamespace(entity_key_serialization_version=3))
    feasts = [serialize_entity_key(k, entity_key_serialization_version=3) for k in feast_io._entity_keys(ids)]
    assert feast_io._serialized_keys(store, ids) == feasts


@pytest.mark.parametrize("customers", [1, 7, 300])
def test_a_views_numeric_features_decoded_together_equal_each_decoded_alone(customers: int) -> None:
    """A SQLite bulk read decodes all numeric features of a view as one (feature, customer) matrix
    (`feast_io._view_columns`): every column equals that feature's values decoded alone, value by value,
    with rows missing, values in any order and a string feature among them."""
    from types import SimpleNamespace

    from features.feast_io import _view_columns

    names = ["recency_days", "region", "orders_90d", "total_spend"]
    numeric = {"recency_days", "orders_90d", "total_spend"}
    rng = random.Random(customers)
    cells = []  # (customer, feature, blob): each customer has each feature at most once
    for feature, name in enumerate(names):
        for customer, blob in enumerate(_blobs(name in numeric, customers, seed=customers + feature)):
            if blob is not None:
                cells.append((customer, feature, blob))
    rng.shuffle(cells)  # SQLite hands the rows back in no promised order
    at = np.array([c for c, _, _ in cells], dtype=np.int64)
    feature = np.array([f for _, f, _ in cells], dtype=np.int64)
    lengths = np.array([len(b) for _, _, b in cells], dtype=np.int64)
    data = b"".join(b for _, _, b in cells)
    got = _view_columns(
        SimpleNamespace(numeric=frozenset(numeric)), names, customers, at, feature, lengths, data
    )
    assert list(got) == names
    for index, name in enumerate(names):
        alone: list[bytes | None] = [None] * customers
        for customer, f, blob in cells:
            if f == index:
                alone[customer] = blob
        expected = _one_by_one(alone, name in numeric)
        assert got[name].dtype == expected.dtype, name
        if name in numeric:
            np.testing.assert_array_equal(got[name], expected)
            np.testing.assert_array_equal(np.signbit(got[name]), np.signbit(expected))
        else:
            assert [(type(v), v) for v in got[name].tolist()] == [(type(v), v) for v in expected.tolist()]


def test_one_value_parses_to_what_protobuf_gives() -> None:
    """`parse_value` reads doubles and one-byte int64s from their bytes: equal to protobuf's value, type
    and sign included, for every kind of value and for ints around the one-byte bound."""
    from feast.protos.feast.types.Value_pb2 import Value

    from features.online_decode import parse_value

    values = edge_values(True) + edge_values(False)
    values += [Value(int64_val=i) for i in (1, 63, 126, 129, 300, 2**40)]
    values += [Value(double_val=v) for v in (1.5e-300, -123.456, 2.0**53 + 1)]
    for value in values:
        blob = value.SerializeToString()
        got, expected = parse_value(blob), scalar(Value.FromString(blob))
        assert type(got) is type(expected), value
        assert got == expected or (got != got and expected != expected), value
        if isinstance(got, float):
            assert np.signbit(got) == np.signbit(expected), value

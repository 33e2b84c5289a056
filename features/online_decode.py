"""Columnar decoding of the values Feast keeps in its online stores.

Feast stores each feature value as a serialized `ValueProto` (feast/types/Value.proto): a message with
one field set. A numeric scalar is one tag byte then its payload: `double_val` (field 5) 0x29 + 8 bytes,
`float_val` (6) 0x35 + 4 bytes, `int32_val` (3) 0x18, `int64_val` (4) 0x20, `bool_val` (7) 0x38 + a
varint. Parsing one message per value in Python was most of a bulk online read; here a feature's blobs
for every customer are decoded at once with numpy, and anything not of those exact shapes (strings,
nulls, lists, negative varints, unknown fields) goes through protobuf, so the result is the same value
by value.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

_DOUBLE, _FLOAT = 0x29, 0x35
_INT32, _INT64, _BOOL = 0x18, 0x20, 0x38
_TS_SECONDS = 0x08  # google.protobuf.Timestamp: field 1 `seconds` (varint); nanos (field 2) follow if set
_MAX_VARINT = 9  # bytes: 63 bits, never negative; longer ones (negative numbers) go through protobuf
# Below this many values protobuf one by one is faster than numpy's fixed cost per call (one customer).
_COLUMNAR_FROM = 32


@dataclass(frozen=True)
class Blobs:
    """Serialized values of one feature: blob i is `data[starts[i] : starts[i] + lengths[i]]` (length 0:
    an empty message, i.e. no value) and belongs to output row `rows[i]`. Several features may share one
    `data` buffer."""

    data: bytes
    starts: np.ndarray
    lengths: np.ndarray
    rows: np.ndarray

    @classmethod
    def from_list(cls, blobs: Sequence[bytes | None]) -> Blobs:
        """Blobs for rows 0..len-1; None or b"" is no value (how Feast's Redis store reads a missing field)."""
        lengths = np.fromiter((len(b) if b else 0 for b in blobs), dtype=np.int64, count=len(blobs))
        starts = np.cumsum(lengths) - lengths
        return cls(b"".join(b for b in blobs if b), starts, lengths, np.arange(len(blobs), dtype=np.int64))

    def blob(self, i: int) -> bytes:
        start = int(self.starts[i])
        return self.data[start : start + int(self.lengths[i])]


def scalar(value: Any) -> Any:
    """The Python value of a `ValueProto`'s set field (None when none or `null_val`): what Feast's
    generic converter gives for the scalars our views hold, several times faster."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)


def parse_value(blob: bytes) -> Any:
    """The Python value of one serialized `ValueProto` (None: no value). The shapes Feast writes most,
    no value, a double and a one-byte int64, are read from their bytes (what protobuf gives, a third of
    the cost: one customer's read parses every value this way); anything else goes through protobuf."""
    size = len(blob)
    if not size:
        return None
    first = blob[0]
    if size == 9 and first == _DOUBLE:
        return _unpack_double(blob, 1)[0]
    if size == 2 and first == _INT64 and blob[1] < 0x80:
        return blob[1]
    return scalar(_value_type().FromString(blob))


_unpack_double = struct.Struct("<d").unpack_from


def as_column(values: list[Any], *, numeric: bool) -> np.ndarray:
    """Python values (None: missing) as a column: float64 with NaN, or object with None."""
    return _as_float64(values) if numeric else np.array(values, dtype=object)


@functools.cache
def _value_type() -> Any:
    from feast.protos.feast.types.Value_pb2 import Value  # Feast is slow to import: only when read

    return Value


def _gather(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(len(starts), width) bytes, row i = data[starts[i] : starts[i] + width]."""
    return data[starts[:, None] + np.arange(width)]


def _varints(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each varint of exactly `sizes[i]` bytes at `starts[i]`: (value as uint64, ok). Not ok: the bytes
    are not one complete varint of that size, or it is longer than `_MAX_VARINT`."""
    values = np.zeros(len(starts), dtype=np.uint64)
    ok = np.zeros(len(starts), dtype=bool)
    for size in np.unique(sizes):
        if not 1 <= size <= _MAX_VARINT:
            continue
        at = np.flatnonzero(sizes == size)
        raw = _gather(data, starts[at], int(size))
        complete = (raw[:, :-1] >= 0x80).all(axis=1) & (raw[:, -1] < 0x80)
        value = np.zeros(len(at), dtype=np.uint64)
        for k in range(int(size)):
            value |= (raw[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        values[at], ok[at] = value, complete
    return values, ok


def numeric_column(blobs: Blobs, n: int) -> np.ndarray:
    """float64 over `n` rows, NaN where there is no value (no blob, empty message, `null_val`)."""
    lengths, rows = blobs.lengths, blobs.rows
    if len(lengths) < _COLUMNAR_FROM:
        column: list[Any] = [None] * n
        for row, value in zip(*_parse_each(blobs), strict=True):
            column[row] = value
        return _as_float64(column)
    out = np.full(n, np.nan, dtype=np.float64)
    starts = blobs.starts
    data = np.frombuffer(blobs.data, dtype=np.uint8)
    done = lengths == 0
    first = np.zeros(len(lengths), dtype=np.uint8)
    first[~done] = data[starts[~done]]

    hit = (lengths == 9) & (first == _DOUBLE)
    out[rows[hit]] = _gather(data, starts[hit] + 1, 8).view("<f8").ravel()
    done |= hit
    hit = (lengths == 5) & (first == _FLOAT)
    out[rows[hit]] = _gather(data, starts[hit] + 1, 4).view("<f4").ravel().astype(np.float64)
    done |= hit
    for tag in (_INT64, _INT32, _BOOL):
        at = np.flatnonzero(~done & (first == tag))
        if not len(at):
            continue
        value, ok = _varints(data, starts[at] + 1, lengths[at] - 1)
        if tag == _INT32:
            ok &= value < 2**31  # larger ones wrap to negative int32 in protobuf
        elif tag == _BOOL:
            ok &= value <= 1
        out[rows[at[ok]]] = value[ok].astype(np.float64)
        done[at[ok]] = True

    rest = np.flatnonzero(~done)
    if len(rest):
        out[rows[rest]] = _as_float64([parse_value(blobs.blob(int(i))) for i in rest])
    return out


def _as_float64(values: list[Any]) -> np.ndarray:
    # the conversion the per-value reader made: None -> NaN, the rest as numpy converts them
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def object_column(blobs: Blobs, n: int) -> np.ndarray:
    """object over `n` rows (str, int, ... as protobuf gives them), None where there is no value.
    Parsed once per distinct blob: string features have few distinct values."""
    out = np.full(n, None, dtype=object)
    data = blobs.data
    seen: dict[bytes, Any] = {}
    for row, start, length in zip(
        blobs.rows.tolist(), blobs.starts.tolist(), blobs.lengths.tolist(), strict=True
    ):
        if length:
            blob = data[start : start + length]
            value = seen.get(blob, seen)
            if value is seen:
                value = seen[blob] = parse_value(blob)
            out[row] = value
    return out


def _parse_each(blobs: Blobs) -> tuple[list[int], list[Any]]:
    """(rows, values) of the non-empty blobs, one protobuf parse each."""
    rows: list[int] = []
    values: list[Any] = []
    data = blobs.data
    for row, start, length in zip(
        blobs.rows.tolist(), blobs.starts.tolist(), blobs.lengths.tolist(), strict=True
    ):
        if length:
            rows.append(row)
            values.append(parse_value(data[start : start + length]))
    return rows, values


def timestamp_seconds(blobs: Blobs, n: int) -> np.ndarray:
    """int64 epoch seconds of serialized `google.protobuf.Timestamp`s over `n` rows, as Feast's Redis
    store reads them (seconds + nanos as a float, to a datetime, then truncated); 0 where none."""
    out = np.zeros(n, dtype=np.int64)
    lengths, rows = blobs.lengths, blobs.rows
    if not len(lengths):
        return out
    data = np.frombuffer(blobs.data, dtype=np.uint8)
    starts = blobs.starts
    at = np.flatnonzero(lengths > 0)
    at = at[data[starts[at]] == _TS_SECONDS]
    seconds, ok = _varints(data, starts[at] + 1, lengths[at] - 1)  # seconds only: nanos are 0
    out[rows[at[ok]]] = seconds[ok].astype(np.int64)
    done = lengths == 0
    done[at[ok]] = True
    rest = np.flatnonzero(~done)
    for i in rest:
        seconds_, nanos = _timestamp_fields(blobs.blob(int(i)))
        moment = datetime.fromtimestamp(seconds_ + nanos / 1_000_000_000.0, tz=UTC)
        out[rows[i]] = int(moment.timestamp())
    return out


def _timestamp_fields(blob: bytes) -> tuple[int, int]:
    """(seconds, nanos) of a serialized `google.protobuf.Timestamp` (protobuf's wire format: fields
    1 and 2 are varints, int64 and int32, the last occurrence wins, unknown fields are skipped)."""
    fields = {1: 0, 2: 0}
    at = 0
    while at < len(blob):
        key, at = _read_varint(blob, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(blob, at)
            if number in fields:
                bits = 64 if number == 1 else 32
                value &= (1 << bits) - 1
                fields[number] = value - (1 << bits) if value >> (bits - 1) else value
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _read_varint(blob, at)
            at += size
        else:
            raise ValueError(f"timestamp: wire type {wire} not understood")
    return fields[1], fields[2]


def _read_varint(blob: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = blob[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at

"""Tiny feature tables of the contract's shape (docs/CONTRACTS.md "Feature tables") for Feast tests.

Used by tests/*/test_feast_*.py and bench/bench_feast.py. Values are set by the caller so expected
results can be worked out by hand.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Feature columns and their dtypes, per table (mirrors feature_repo/views.py; a test checks both agree
# with features.build.FEATURE_TABLES once it exists).
TABLES: dict[str, dict[str, str]] = {
    "customer_transactions": {
        "recency_days": "float64",
        "frequency_30d": "int64",
        "frequency_90d": "int64",
        "frequency_365d": "int64",
        "monetary_30d": "float64",
        "monetary_90d": "float64",
        "monetary_365d": "float64",
        "avg_order_value_365d": "float64",
        "frequency_trend_90d": "float64",
        "monetary_trend_90d": "float64",
        "return_rate_365d": "float64",
        "discount_rate_365d": "float64",
        "category_breadth_365d": "int64",
        "orders_lifetime": "int64",
        "monetary_lifetime": "float64",
        "tenure_days": "float64",
    },
    "customer_engagement": {
        "visits_30d": "int64",
        "visits_90d": "int64",
        "page_views_90d": "int64",
        "product_views_90d": "int64",
        "email_opens_90d": "int64",
        "email_clicks_90d": "int64",
        "email_click_rate_90d": "float64",
        "support_tickets_90d": "int64",
        "complaints_90d": "int64",
        "complaints_365d": "int64",
        "days_since_last_event": "float64",
    },
    "customer_leads": {
        "lead_engagement_score": "float64",
        "lead_age_days": "float64",
        "lead_source": "string",
        "is_open_lead": "int64",
    },
    "customer_profile": {
        "region": "string",
        "customer_type": "string",
        "acquisition_channel": "string",
        "signup_tenure_days": "float64",
    },
}

STRING_VALUES = {
    "lead_source": ["web", "fair", "partner"],
    "region": ["north", "south", "east"],
    "customer_type": ["b2c", "b2b", "b2c"],
    "acquisition_channel": ["ads", "referral", "organic"],
}


def utc(value: str) -> pd.Timestamp:
    """A UTC timestamp from an ISO date string."""
    return pd.Timestamp(value, tz="UTC")


def feature_table(table: str, rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """One feature table from (customer_id, snapshot date, marker) rows.

    Every numeric feature of a row equals `marker` (so a test can tell which snapshot a value came from);
    string features are `STRING_VALUES[name][marker % 3]`.
    """
    columns = TABLES[table]
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="string").astype(object),
            "event_timestamp": pd.Series([utc(r[1]) for r in rows], dtype="datetime64[us, UTC]"),
            "created": pd.Series([utc(r[1]) for r in rows], dtype="datetime64[us, UTC]"),
        }
    )
    markers = np.array([r[2] for r in rows])
    for name, dtype in columns.items():
        if dtype == "string":
            frame[name] = [STRING_VALUES[name][m % 3] for m in markers]
        else:
            frame[name] = markers.astype(dtype)
    return frame


def write_tables(directory: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Write feature tables as `<directory>/<table>.parquet` (microsecond UTC timestamps)."""
    directory.mkdir(parents=True, exist_ok=True)
    for table, frame in tables.items():
        frame.to_parquet(directory / f"{table}.parquet", index=False)


def synthetic_tables(*, customers: int, snapshots: list[str], seed: int = 0) -> dict[str, pd.DataFrame]:
    """Random feature tables for `customers` x `snapshots` (benchmarks; values are not asserted)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"P{i:012x}" for i in range(customers)], dtype=object)
    out = {}
    for table, columns in TABLES.items():
        parts = []
        for snap in snapshots:
            stamp = utc(snap)
            part = pd.DataFrame({"customer_id": ids})
            part["event_timestamp"] = pd.Series([stamp] * customers, dtype="datetime64[us, UTC]")
            part["created"] = part["event_timestamp"]
            for name, dtype in columns.items():
                if dtype == "string":
                    part[name] = rng.choice(STRING_VALUES[name], size=customers)
                elif dtype == "int64":
                    part[name] = rng.integers(0, 400, size=customers, dtype=np.int64)
                else:
                    part[name] = rng.random(customers) * 100.0
            parts.append(part)
        out[table] = pd.concat(parts, ignore_index=True)
    return out


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(workdir: Path, *, timeout_s: float = 20.0) -> Iterator[str]:
    """Run a throw-away `redis-server` on loopback (no persistence) and yield "127.0.0.1:<port>".

    Raises FileNotFoundError when redis-server is not installed (`make services` installs it).
    """
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(
            "redis-server not installed (run `make services`, scripts/install-services.sh)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    command += ["--save", "", "--appendonly", "no", "--protected-mode", "yes", "--logfile", "redis.log"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "redis.log"
                    detail = log.read_text(errors="replace")[-500:] if log.is_file() else ""
                    raise RuntimeError(f"redis-server on port {port} did not start: {detail}") from None
                time.sleep(0.05)
        client.close()
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def edge_values(numeric: bool) -> list[Any]:
    """ValueProtos an online store may hold, for a numeric or a string feature: every scalar kind,
    NaN, infinities, signed zero, extreme and negative ints, null, an empty message."""
    from feast.protos.feast.types.Value_pb2 import Null, Value

    common = [Value(), Value(null_val=Null.NULL), Value(int64_val=7), Value(double_val=2.5)]
    if not numeric:
        return common + [Value(string_val=s) for s in ("north", "", "Zürich", "x" * 200)]
    return common + [
        Value(double_val=float("nan")),
        Value(double_val=float("inf")),
        Value(double_val=float("-inf")),
        Value(double_val=-0.0),
        Value(double_val=5e-324),
        Value(double_val=1.7976931348623157e308),
        Value(float_val=1.1),
        Value(float_val=float("nan")),
        Value(int64_val=0),
        Value(int64_val=127),
        Value(int64_val=128),
        Value(int64_val=-1),
        Value(int64_val=2**63 - 1),
        Value(int64_val=-(2**63)),
        Value(int32_val=-5),
        Value(int32_val=2**31 - 1),
        Value(bool_val=True),
        Value(bool_val=False),
        Value(unix_timestamp_val=1_700_000_000),
        Value(string_val="3.25"),
    ]


def write_edge_rows(store: Any, view_name: str, *, customers: int, as_of: pd.Timestamp) -> list[str]:
    """Write `customers` rows into `view_name`'s online table through Feast's own `online_write_batch`
    (so its key encoding and value layout, on any store): each feature cycles through `edge_values`
    (offset per feature), every 7th customer's row is 400 days old, every 11th no row. Returns
    the ids written, in order."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.types import PrimitiveFeastType

    view = store.get_feature_view(view_name)
    numeric_types = {
        PrimitiveFeastType.INT32,
        PrimitiveFeastType.INT64,
        PrimitiveFeastType.FLOAT32,
        PrimitiveFeastType.FLOAT64,
        PrimitiveFeastType.BOOL,
    }
    ids, rows = [], []
    for c in range(customers):
        customer = f"E{c:04d}"
        ids.append(customer)
        if c % 11 == 5:
            continue
        values = {}
        for j, feat in enumerate(view.features):
            pool = edge_values(feat.dtype in numeric_types)
            values[feat.name] = pool[(c + j) % len(pool)]
        stamp = (as_of - pd.Timedelta(days=400 if c % 7 == 3 else 1)).to_pydatetime()
        key = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=customer)])
        rows.append((key, values, stamp, stamp))
    store.provider.online_write_batch(store.config, view, rows, progress=None)
    return ids


def assert_same_read(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Two raw online reads (view -> (seconds, feature -> column)) hold the same values, dtypes, NaNs
    and timestamps."""
    assert actual.keys() == expected.keys()
    for view, (seconds, columns) in expected.items():
        np.testing.assert_array_equal(actual[view][0], seconds, err_msg=view)
        assert actual[view][1].keys() == columns.keys(), view
        for name, column in columns.items():
            got = actual[view][1][name]
            assert got.dtype == column.dtype, name
            if column.dtype == np.float64:
                np.testing.assert_array_equal(got, column, err_msg=name)  # NaN equals NaN here
                np.testing.assert_array_equal(np.signbit(got), np.signbit(column), err_msg=name)
            else:
                assert [(type(v), v) for v in got.tolist()] == [(type(v), v) for v in column.tolist()], name

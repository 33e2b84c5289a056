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

"""A small synthetic company run once through the real pipeline (generator -> ingest -> features ->
Feast -> MLflow champions -> tag cut points), shared by the service tests."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

API_KEY = "test-key-persona-0123456789"


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    """Set environment variables for the block (session fixtures cannot use monkeypatch)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a trained, materialized, tagged small world (about 600 persons)."""
    from persona.cli import main

    data_dir = tmp_path_factory.mktemp("world") / "data"
    steps = [
        ["data", "generate", "--customers", "600", "--seed", "5", "--out", str(data_dir / "raw")],
        ["ingest"],
        ["features", "build"],
        ["features", "apply"],
        ["features", "materialize"],
        ["train", "all"],
        ["tags", "fit"],
    ]
    with env(PERSONA_DATA_DIR=str(data_dir)):
        for step in steps:
            assert main(step) == 0, f"persona {' '.join(step)} failed"
    return data_dir


@pytest.fixture(scope="session")
def world_ids(world: Path) -> dict[str, list[str]]:
    """Customer ids of the world by kind: scoreable, withdrawn consent."""
    customers = pd.read_parquet(world / "clean" / "customers.parquet")
    features = pd.read_parquet(world / "features" / "customer_transactions.parquet")
    latest = features[features["event_timestamp"] == features["event_timestamp"].max()]
    active = latest.loc[latest["frequency_365d"] > 0, "customer_id"].astype(str).tolist()
    withdrawn = customers.loc[~customers["consent_profiling"].astype(bool), "customer_id"].astype(str).tolist()
    assert active and withdrawn, "the world needs active and withdrawn customers"
    return {"active": active, "withdrawn": withdrawn, "all": latest["customer_id"].astype(str).tolist()}

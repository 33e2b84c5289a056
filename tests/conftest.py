"""Shared fixtures. Tests never touch ./data: each gets its own data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Tests ingest hand-made files, which the public demo salt refuses (features/salt_guard.py);
# tests/data/test_salt_guard.py checks the refusal itself with the demo salt.
os.environ.setdefault("PERSONA_IDENTITY__SALT", "a-private-salt-for-tests")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(data_dir: Path):
    from configs.settings import load_settings

    return load_settings(data_dir=str(data_dir))

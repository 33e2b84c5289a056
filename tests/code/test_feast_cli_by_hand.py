"""The `feast` CLI run by hand in feature_repo/: it needs PERSONA_DATA_DIR, and says so when missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two `feast` start-ups (Feast alone imports in about 5 s)

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
FEAST = str(Path(sys.executable).with_name("feast"))


def _feast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([FEAST, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_feast_plan_without_the_data_dir_says_what_to_export_and_writes_nothing():
    env = {k: v for k, v in os.environ.items() if k != "PERSONA_DATA_DIR"}
    before = sorted(p.name for p in REPO.iterdir())
    done = _feast("plan", env=env)
    assert done.returncode != 0
    assert "export PERSONA_DATA_DIR as an absolute path" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in REPO.iterdir() if p.name != "__pycache__") == [
        n for n in before if n != "__pycache__"
    ]
    relative = _feast("plan", env={**env, "PERSONA_DATA_DIR": "data"})
    assert relative.returncode != 0 and "absolute path" in relative.stderr


def test_feast_plan_with_the_data_dir_works(tmp_path):
    env = {**os.environ, "PERSONA_DATA_DIR": str(tmp_path)}
    done = _feast("plan", "--skip-source-validation", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "churn_v1" in done.stdout
    assert (tmp_path / "feast").is_dir()

"""A small synthetic company run once through the real pipeline (generator -> ingest -> features ->
Feast -> MLflow champions -> tag cut points), shared by the service tests."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

PROJECT = Path(__file__).resolve().parents[2]

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
    withdrawn = (
        customers.loc[~customers["consent_profiling"].astype(bool), "customer_id"].astype(str).tolist()
    )
    assert active and withdrawn, "the world needs active and withdrawn customers"
    return {"active": active, "withdrawn": withdrawn, "all": latest["customer_id"].astype(str).tolist()}


# ------------------------------------------------------------------ PostgreSQL, one server per session
def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server; yields a base URL (without database name)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        subprocess.run(["bash", str(PROJECT / "scripts" / "install-services.sh")], check=False)
        bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed and scripts/install-services.sh could not install it")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="persona-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "persona",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr}\n{log}") from None
    try:
        yield f"postgresql+psycopg://persona@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], check=False
        )
        shutil.rmtree(root, ignore_errors=True)


def new_database(base: str) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{base}/{name}"

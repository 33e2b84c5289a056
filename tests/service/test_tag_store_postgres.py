"""The tag store on a real PostgreSQL server (initdb + pg_ctl on a free loopback port, as the `postgres`
user when run as root), started here and stopped at the end: same change detection as on SQLite."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from serving import tag_store as ts
from serving.outbox import make_state_engine
from serving.tag_store import TagStore

pytestmark = pytest.mark.integration


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (make services)")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="persona-tags-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a `postgres` user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "persona",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        base = f"postgresql+psycopg://persona@127.0.0.1:{port}"
        name = f"t_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        yield f"{base}/{name}"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], check=False
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("small_batch", [5_000, 1])  # by-id reads, and whole-tag reads
def test_only_changes_are_recorded_on_postgres(pg_url, monkeypatch, small_batch):
    monkeypatch.setattr(ts, "_SMALL_BATCH", small_batch)
    engine = make_state_engine(pg_url)
    store = TagStore(engine, crm_fields={"vip": "persona_vip"}, tag_inputs={"vip": ["monetary_365d"]})
    store.create_schema()
    with engine.begin() as conn:  # each parametrisation starts from empty tables
        conn.execute(sa.text("DELETE FROM tag_current"))
        conn.execute(sa.text("DELETE FROM tag_history"))
    t0 = datetime(2026, 11, 17, 3, tzinfo=UTC)
    inputs = pd.DataFrame({"customer_id": ["P1", "P2"], "monetary_365d": [9000.5, 10.0]})

    def apply(values, at):
        with engine.begin() as conn:
            return store.apply(
                conn,
                tags=pd.DataFrame({"customer_id": ["P1", "P2"], "vip": values}),
                produced_by={"vip": "rule:vip@v1"},
                inputs=inputs,
                at=at,
            )

    assert len(apply([True, False], t0)) == 2
    assert apply([True, False], t0 + timedelta(days=1)) == []
    changes = apply([False, False], t0 + timedelta(days=2))
    assert [(c.customer_id, c.old_value, c.new_value, c.inputs) for c in changes] == [
        ("P1", "true", "false", {"monetary_365d": 9000.5})
    ]
    history = store.history("P1")
    assert [(h.old_value, h.new_value, h.changed_at) for h in history] == [
        ("true", "false", t0 + timedelta(days=2)),
        (None, "true", t0),
    ]
    assert store.current("P2")[0].updated_at == t0
    engine.dispose()

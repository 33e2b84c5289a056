"""The one lock of Persona's batch jobs (`persona retrain`, `persona refresh`): both write the feature
tables, the Feast registry and the tag store, so they never run at the same time on one data dir."""

from __future__ import annotations

import fcntl
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

from core.errors import PersonaError


class RetrainBusy(PersonaError):
    """Another retrain or refresh holds the lock."""


class RetrainLock:
    """An exclusive, non-blocking `fcntl.flock` on a lock file holding the owner's pid, host, start
    time and job. The kernel drops the lock when the process dies, so a crash never leaves a stale lock."""

    def __init__(self, path: Path, *, job: str = "retrain") -> None:
        self.path = Path(path)
        self.job = job
        self._fd: int | None = None

    def __enter__(self) -> RetrainLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            found = re.search(r"\bjob=(\w+)", holder)
            raise RetrainBusy(
                f"another {found.group(1) if found else 'retrain'} is running (lock {self.path} held by {holder})",
                hint="wait for it to finish; the lock is released when that process exits",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            (
                f"pid={os.getpid()} host={socket.gethostname()} "
                f"since={datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} job={self.job}\n"
            ).encode(),
            0,
        )
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

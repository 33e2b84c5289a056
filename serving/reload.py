"""Hot reload of the model set: the champions, the tag catalog and its cut points, swapped in whole.

A *model set* is one immutable `Scorer` (its `ServingState`): every request takes the reference once and
answers from it alone, so an answer never mixes versions. A background thread polls a cheap fingerprint
of what the set was built from (the registry's `champion` aliases, the catalog and cut-point files) every
`serving.reload_poll_seconds`; when it changes, the new set is built beside the old one (the old keeps
serving), then the reference is swapped in one assignment. A set that fails to build is logged and the
old one keeps serving; the next poll tries again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from artifacts.catalog import cutpoints_path
from artifacts.registry import CHAMPION, KINDS, alias_version, client, model_name

log = logging.getLogger("persona.serving.reload")

T = TypeVar("T")


def _file_stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path), stat.st_mtime_ns, stat.st_size)


def registry_fingerprint(settings: Any) -> tuple[Hashable, ...]:
    """What a model set is built from, cheaply: each kind's champion version (MLflow registry) and the
    catalog, reasons and cut-point files (path, mtime, size). Equal fingerprints mean an equal set."""
    c = client(settings)
    champions = []
    for kind in KINDS:
        mv = alias_version(c, model_name(settings, kind), CHAMPION)
        champions.append((kind, None if mv is None else str(mv.version)))
    files = (
        _file_stamp(Path(settings.tags.catalog_path())),
        _file_stamp(Path(settings.tags.reasons_path())),
        _file_stamp(cutpoints_path(settings)),
    )
    return (tuple(champions), files)


def set_id(fingerprint: Hashable) -> str:
    """A short, stable name of a model set (logs, `/readyz`, the `X-Persona-Model-Set` header)."""
    return hashlib.sha1(repr(fingerprint).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ModelSet(Generic[T]):
    """One loaded set and what it was built from."""

    value: T
    fingerprint: Hashable
    id: str


class Reloader(Generic[T]):
    """Holds the current model set and replaces it when its fingerprint changes.

    `fingerprint()` must be cheap (it runs every poll); `build()` may take seconds (it runs on the
    polling thread while the current set keeps serving). `on_swap(old, new)` runs after each swap
    (readiness report, metrics, carrying the consent list over)."""

    def __init__(
        self,
        *,
        fingerprint: Callable[[], Hashable],
        build: Callable[[], T],
        poll_seconds: float,
        on_swap: Callable[[ModelSet[T] | None, ModelSet[T]], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._fingerprint = fingerprint
        self._build = build
        self.poll_seconds = poll_seconds
        self._on_swap = on_swap
        self._on_error = on_error
        self._current: ModelSet[T] | None = None
        self._check_lock = threading.Lock()  # one build at a time (poller and a first request)
        self.last_error: str | None = None

    @property
    def current(self) -> ModelSet[T] | None:
        """The set to answer one request from: read it once per request."""
        return self._current

    def check(self) -> bool:
        """Rebuild and swap if what the set is built from changed (or nothing is loaded yet).
        Returns True when a new set was swapped in. Never raises: a failure is kept in `last_error`."""
        with self._check_lock:
            try:
                fingerprint = self._fingerprint()
                old = self._current
                if old is not None and old.fingerprint == fingerprint:
                    return False
                value = self._build()
                # A promotion between the fingerprint and the build: the set holds the newer version
                # under the older fingerprint, so the next poll rebuilds it once more (harmless).
                new = ModelSet(value=value, fingerprint=fingerprint, id=set_id(fingerprint))
            except Exception as exc:  # a broken dependency must not stop the poller or the old set
                self.last_error = _describe(exc)
                log.warning("model set not (re)loaded: %s", self.last_error)
                if self._on_error is not None:
                    self._on_error(self.last_error)
                return False
            self._current = new  # the swap: one reference assignment, atomic for every reader
            self.last_error = None
            if self._on_swap is not None:
                self._on_swap(old, new)
            log.info("model set %s serving (was %s)", new.id, None if old is None else old.id)
            return True

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set (a daemon thread of each worker)."""
        while not stop.wait(self.poll_seconds if self._current is not None else min(self.poll_seconds, 10.0)):
            self.check()


def _describe(exc: BaseException) -> str:
    from core.errors import USER_ERRORS

    return str(exc) if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: {exc}"

"""Logging set-up for the CLI and services. Never log raw PII or API keys: log customer_id only.

The CLI keeps stderr for Persona's own lines: third-party warnings (Python `warnings` and log records of
other libraries) go to `{data_dir}/logs/persona.log`, and to stderr as well with `persona --verbose`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from core.redact import install as install_redaction

# The loggers whose records are Persona's own lines: "persona.*" and the modules of its packages.
OWN_LOGGERS = ("persona", "core", "configs", "features", "models", "artifacts", "training", "serving")
LOG_FILE = "logs/persona.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | None = None) -> None:
    """Services: every record to stderr at `level` (PERSONA_LOG_LEVEL, default INFO), chatty libraries
    at WARNING."""
    logging.basicConfig(level=(level or os.environ.get("PERSONA_LOG_LEVEL", "INFO")).upper(), format=_FORMAT)
    install_redaction()  # URL passwords masked in every line, whoever logs them
    for noisy in ("alembic", "urllib3", "httpx", "feast", "mlflow", "bentoml", "matplotlib", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _LazyFileHandler(logging.FileHandler):
    """A file handler that creates its folder and opens the file only when the first record arrives,
    so a command that logs nothing writes nothing (e.g. one that reports a missing data dir)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            try:
                Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                return  # nowhere to write (read-only data dir): the record is dropped, not shown
        super().emit(record)


class _OwnOrVerbose(logging.Filter):
    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or record.name.split(".")[0] in OWN_LOGGERS


def configure_cli(*, data_dir: Path | None, verbose: bool) -> Path | None:
    """Route third-party warnings and log records to the log file under `data_dir` (None: nowhere),
    keep Persona's own WARNING+ records on stderr, show everything there with `verbose`.
    Returns the log file's path."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_persona_cli", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.addFilter(_OwnOrVerbose(verbose))
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    path = None
    if data_dir is not None:
        path = data_dir / LOG_FILE
        file = _LazyFileHandler(path)
        file.setLevel(logging.INFO)
        file.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(file)
    for handler in handlers:
        handler._persona_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    install_redaction()  # URL passwords masked in the file and on stderr alike
    # Libraries that log below WARNING at INFO by default stay in the file only.
    for noisy in ("alembic", "urllib3", "httpx", "feast", "mlflow", "bentoml", "matplotlib", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    # Python warnings become records of the `py.warnings` logger: file always, stderr with --verbose.
    # (re-armed: something may have replaced warnings.showwarning since an earlier call)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    return path


def reopen_log_file() -> None:
    """Close the CLI's log file so the next record opens it afresh (after its folder was deleted)."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_persona_cli", False) and isinstance(handler, logging.FileHandler):
            handler.close()


class _LineLogger(io.TextIOBase):
    """A text stream whose lines become INFO records of one logger."""

    def __init__(self, logger: logging.Logger, fallback: object) -> None:
        self.logger = logger
        self.fallback = fallback  # the stream replaced: where a handler that writes to stderr ends up
        self.pending = ""
        self.emitting = False

    def write(self, text: str) -> int:
        if self.emitting:  # a handler of ours writing to (the redirected) stderr: no loop
            return self.fallback.write(text)  # type: ignore[attr-defined]
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        self.emitting = True
        try:
            for line in lines:
                if line.strip():
                    self.logger.info(line)
        finally:
            self.emitting = False
        return len(text)

    def flush(self) -> None:
        pending, self.pending = self.pending, ""
        if pending.strip():
            self.write(pending + "\n")


@contextlib.contextmanager
def stderr_to_log(logger_name: str) -> Iterator[None]:
    """Turn what a library prints on stderr inside the block into log records of `logger_name` (MLflow
    prints its registry messages with print(), past logging). Name a logger outside the library's own
    tree: MLflow's own handler writes to stderr, which would come back here. Process-wide: for
    single-threaded jobs."""
    stream = _LineLogger(logging.getLogger(logger_name), sys.stderr)
    with contextlib.redirect_stderr(stream):
        try:
            yield
        finally:
            stream.flush()

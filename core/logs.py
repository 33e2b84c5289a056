"""Logging set-up for the CLI and services. Never log raw PII or API keys: log customer_id only."""

from __future__ import annotations

import logging
import os


def configure(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("PERSONA_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from core.redact import install

    install()  # URL passwords masked in every line, whoever logs them
    for noisy in ("alembic", "urllib3", "httpx", "feast", "mlflow", "bentoml", "matplotlib", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

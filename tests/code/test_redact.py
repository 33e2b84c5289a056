"""Secrets never printed: URL passwords and secret query values are masked in text, logs and the CLI."""

from __future__ import annotations

import logging

import pytest

from core.redact import RedactingFilter, mask_urls


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql+psycopg://crm:s3cr3t@db:5432/crm", "postgresql+psycopg://crm:***@db:5432/crm"),
        ("https://bot:hunter2@crm.example.com/api", "https://bot:***@crm.example.com/api"),
        (
            "https://api.example.com/v3?hapikey=abc123&limit=5",
            "https://api.example.com/v3?hapikey=***&limit=5",
        ),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("sqlite:////tmp/crm.sqlite", "sqlite:////tmp/crm.sqlite"),
        (
            "CRM postgresql://u:p@h/d unavailable; also http://x:y@z",
            "CRM postgresql://u:***@h/d unavailable; also http://x:***@z",
        ),
    ],
)
def test_mask_urls(text: str, shown: str) -> None:
    assert mask_urls(text) == shown


def test_log_records_are_masked_with_their_arguments() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "cannot reach %s", ("mysql://a:b@h/db",), None
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "cannot reach mysql://a:***@h/db"


def test_crm_status_and_errors_never_print_the_password(
    data_dir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona.cli import main

    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PERSONA_CRM__URL", "postgresql+psycopg://crm:TopSecret99@127.0.0.1:1/crm")
    assert main(["crm", "status"]) == 0
    out = capsys.readouterr()
    assert "TopSecret99" not in out.out + out.err and "crm:***@127.0.0.1" in out.out
    # `crm sync` cannot connect: the error names the CRM, not its password
    main(["crm", "sync", "--timeout", "0"])
    out = capsys.readouterr()
    assert "TopSecret99" not in out.out + out.err

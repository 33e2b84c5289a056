"""`persona campaign`: bad input is one line naming the field, exit 2; the imported Hillstrom report;
the API app answers 404 for an unknown campaign."""

from __future__ import annotations

import pytest

from features.shared_data import shared_data_dir
from persona.cli import main

BAD = """
name: winback
audience: "churn_risk = 'high'"
arms:
  - {name: treatment, share: 0.6}
  - {name: control, share: 0.3, control: true}
start: 2026-01-01
end: 2026-02-01
outcome: {kind: conversion, window_days: 30}
"""


def test_shares_not_summing_to_one_exit_2_naming_the_field(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    path = tmp_path / "winback.yaml"
    path.write_text(BAD)
    assert main(["campaign", "create", "winback", "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: winback.yaml: arms: shares sum to 0.9, they must sum to 1"


def test_unknown_campaign_report_exit_2(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    assert main(["campaign", "report", "nosuch"]) == 2
    assert "no campaign 'nosuch'" in capsys.readouterr().err


@pytest.mark.skipif(not (shared_data_dir() / "hillstrom").is_dir(), reason="public datasets not found")
def test_hillstrom_report_prints_and_writes_html(tmp_path, capsys) -> None:
    html = tmp_path / "h.html"
    assert main(["campaign", "report", "hillstrom", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "mens_email vs no_email: +0.07659" in out
    assert "<h1>Campaign hillstrom</h1>" in html.read_text()


def test_api_unknown_campaign_is_404(tmp_path, monkeypatch) -> None:
    from starlette.testclient import TestClient

    from configs.settings import load_settings
    from serving.campaign_api import make_app

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    settings = load_settings()
    client = TestClient(make_app(lambda: settings))
    response = client.get("/nosuch")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert client.get("/Bad%20Name").status_code == 400

"""`persona data generate`: options, defaults from config, summary, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona.cli import main


def test_generate_writes_the_sources_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "raw"
    code = main(
        [
            "data",
            "generate",
            "--customers",
            "120",
            "--seed",
            "4",
            "--out",
            str(out),
            "--start",
            "2025-01-01",
            "--end",
            "2025-06-30",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "generating 120 persons, seed 4, 2025-01-01..2025-06-30" in printed
    for source in ("contacts", "orders", "events", "leads"):
        assert source in printed
    assert "done in" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "crm.sqlite",
        "events.csv.gz",
        "ground_truth",
        "leads.csv",
        "orders.csv.gz",
    ]


def test_out_defaults_to_data_dir_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("PERSONA_GENERATOR__CUSTOMERS", "80")
    assert main(["data", "generate"]) == 0
    assert (tmp_path / "d" / "raw" / "orders.csv.gz").is_file()


def test_existing_output_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "leads.csv").write_text("mine\n")
    assert main(["data", "generate", "--customers", "50", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {out} already holds data" in err
    assert "--force" in err
    assert (out / "leads.csv").read_text() == "mine\n"
    assert main(["data", "generate", "--customers", "50", "--out", str(out), "--force"]) == 0
    assert (out / "leads.csv").read_text().startswith('"lead_id"')


def test_bad_window_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["data", "generate", "--out", str(tmp_path / "x"), "--start", "2025-01-01", "--end", "2024-01-01"]
    )
    assert code == 2
    assert (
        "generator: Value error, end (2024-01-01) must be after start (2025-01-01)" in capsys.readouterr().err
    )
    assert not (tmp_path / "x").exists()

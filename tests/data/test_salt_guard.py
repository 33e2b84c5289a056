"""The public demo salt pseudonymises the demo world only: real sources stop with a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.sections.identity import DEMO_SALT
from configs.settings import load_settings
from core.errors import ConfigError
from features.ingest import run_ingest
from persona.cli import main


@pytest.fixture
def demo_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_IDENTITY__SALT", raising=False)


def test_the_demo_world_ingests_with_the_demo_salt(demo_salt: None, data_dir: Path) -> None:
    assert main(["data", "generate", "--customers", "40", "--seed", "3", "--out", str(data_dir / "raw")]) == 0
    settings = load_settings(data_dir=str(data_dir))
    assert settings.identity.salt.get_secret_value() == DEMO_SALT
    assert len(run_ingest(settings).tables["customers"]) > 0


def test_real_sources_with_the_demo_salt_stop_naming_the_variable(
    demo_salt: None, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = data_dir / "orders.csv"
    orders.write_text("order_id,customer_ref,order_ts,amount\nO1,a@b.cn,2024-01-01,10\n")
    overrides = {"sources": {"orders": {"path": str(orders)}, "contacts": None, "events": None, "leads": None}}
    settings = load_settings(data_dir=str(data_dir), **overrides)
    with pytest.raises(ConfigError, match="PERSONA_IDENTITY__SALT"):
        run_ingest(settings)
    assert not (data_dir / "clean").exists()  # nothing was written
    # the CLI: one line, exit 2
    config = data_dir / "real.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nsources:\n  orders: {{path: {orders}}}\n  contacts: null\n  events: null\n"
        "  leads: null\n"
    )
    assert main(["--config", str(config), "ingest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PERSONA_IDENTITY__SALT" in err[0]


def test_a_private_salt_ingests_real_sources(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("PERSONA_IDENTITY__SALT", "my-company-secret-salt")
    orders = data_dir / "orders.csv"
    orders.write_text("order_id,customer_ref,order_ts,amount\nO1,a@b.cn,2024-01-01,10\n")
    overrides = {"sources": {"orders": {"path": str(orders)}, "contacts": None, "events": None, "leads": None}}
    result = run_ingest(load_settings(data_dir=str(data_dir), **overrides))
    assert len(result.tables["orders"]) == 1

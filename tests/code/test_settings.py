"""Configuration: YAML + env overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import ConfigError, load_settings


def test_base_yaml_loads_with_embedded_defaults() -> None:
    s = load_settings()
    assert s.sources.orders.configured
    assert s.feast.online_store == "sqlite"
    assert s.url(s.state_url).startswith("sqlite:////")


def test_env_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_TRAINING__SEED", "123")
    monkeypatch.setenv("PERSONA_DATA_DIR", "/tmp/elsewhere")
    s = load_settings()
    assert s.training.seed == 123
    assert str(s.data_dir) == "/tmp/elsewhere"


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_TRAINING__CHURN_HORIZON_DAYS", "-5")
    with pytest.raises(ConfigError, match=r"training\.churn_horizon_days: Input should be greater than 0"):
        load_settings()


def test_unknown_key_in_override_file(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("training:\n  sead: 3\n")
    with pytest.raises(ConfigError, match=r"training\.sead: unknown key"):
        load_settings(extra)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("training:\n  seed: [1\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: line \d+"):
        load_settings(extra)


def test_orders_source_is_required(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("sources:\n  orders:\n    path: null\n")
    with pytest.raises(ConfigError, match="orders"):
        load_settings(extra)

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


def test_a_config_naming_orders_brings_its_own_sources(tmp_path: Path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        "sources:\n  orders:\n    path: /srv/export/orders.csv\n    columns: {customer_ref: cust}\n"
    )
    s = load_settings(extra)
    # The demo's CRM, events and leads are not inherited, nor the demo's column mapping of orders.
    assert not (s.sources.contacts.configured or s.sources.events.configured or s.sources.leads.configured)
    assert s.sources.orders.columns == {"customer_ref": "cust"}


def test_a_config_switching_one_source_off_keeps_the_other_defaults(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("sources:\n  leads: null\n")
    s = load_settings(extra)
    assert s.sources.orders.configured and s.sources.events.configured and s.sources.contacts.configured
    assert not s.sources.leads.configured
    assert s.sources.orders.columns["amount"] == "amount"


def test_training_services_accept_one_name_or_a_list(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("training:\n  services:\n    churn: churn_orders_v1\n")
    s = load_settings(extra)
    assert s.training.services["churn"] == ["churn_orders_v1"]
    assert s.training.services["segments"] == ["segmentation_v1", "segmentation_orders_v1"]


def test_csv_separator_is_one_character_or_whitespace(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("sources:\n  orders:\n    path: o.txt\n    csv_sep: tabs\n")
    with pytest.raises(ConfigError, match=r"sources\.orders\.csv_sep: .*one character or 'whitespace'"):
        load_settings(extra)

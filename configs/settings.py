"""Typed settings: `configs/base.yaml`, an optional override file, then `PERSONA_*` environment variables.

Loaded once at the entry point (`load_settings`) and passed down; nothing here runs at import time.
Environment variables win over YAML: `PERSONA_DATA_DIR=/x`, `PERSONA_TRAINING__SEED=3` (`__` nests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from configs.sections.dashboard import DashboardConfig
from configs.sections.engine import DuckdbConfig, Engine, SparkConfig
from configs.sections.feast import FeastConfig
from configs.sections.features import FeaturesConfig
from configs.sections.generator import GeneratorConfig
from configs.sections.identity import IdentityConfig
from configs.sections.refresh import RefreshConfig
from configs.sections.schedule import ScheduleConfig
from configs.sections.segments import SegmentsConfig
from configs.sections.serving import CrmConfig, ServingConfig
from configs.sections.sources import SourcesConfig
from configs.sections.tags import TagsConfig
from configs.sections.training import MlflowConfig, TrainingConfig
from configs.sections.triggers import TriggersConfig

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFIG_DIR.parent
BASE_YAML = CONFIG_DIR / "base.yaml"


class ConfigError(ValueError):
    """A configuration file or variable is invalid; the message names the key and the problem."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERSONA_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path("data")
    # Persona's own state (current tags, tag history, outbox): one database, so a tag change and its
    # outbox entry commit in one transaction.
    state_url: str = "sqlite:///{data_dir}/state/persona.sqlite"
    # Where ingest and features compute: DuckDB in this process (default) or Apache Spark.
    engine: Engine = "duckdb"
    duckdb: DuckdbConfig = Field(default_factory=DuckdbConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    sources: SourcesConfig
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    feast: FeastConfig = Field(default_factory=FeastConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    tags: TagsConfig = Field(default_factory=TagsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    crm: CrmConfig = Field(default_factory=CrmConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides what the YAML files (passed as init values) say.
        return (env_settings, init_settings)

    def path(self, template: str) -> Path:
        """A configured path with `{data_dir}` filled in; relative paths are relative to the cwd."""
        return Path(template.format(data_dir=self.data_dir))

    def url(self, template: str) -> str:
        """A configured URL with `{data_dir}` filled in (absolute, so SQLite URLs work from any cwd)."""
        return template.format(data_dir=self.data_dir.resolve())


SOURCE_NAMES = ("orders", "contacts", "events", "leads")


def _merge_sources(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The `sources` of a config file over base.yaml's (keyword overrides of `load_settings` patch).

    A source the override names is taken as written, not merged with the base's entry: the demo's
    column mapping describes the demo's files, not yours. Orders bring their own set: an override that
    names `orders` gets no optional source it does not name (the demo's CRM, events and leads belong to
    the demo's orders). An override naming only `contacts: null` or `as_of` keeps the other defaults.
    """
    merged = {k: v for k, v in base.items() if not (k in SOURCE_NAMES and "orders" in override)}
    merged.update(override)
    return merged


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(loaded).__name__}")
    return loaded


def format_validation_error(exc: ValidationError, *, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown key (check the spelling against configs/base.yaml)"
        elif err["type"] == "missing":
            problem = "required key is missing"
        got = err.get("input")
        shown = "" if err["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {problem}{shown}")
    return "\n".join(lines)


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read base.yaml, then `config_path` (or $PERSONA_CONFIG) over it, then env vars and `overrides`."""
    data = _read_yaml(BASE_YAML)
    origin = str(BASE_YAML)
    extra = config_path or os.environ.get("PERSONA_CONFIG")
    if extra:
        own = _read_yaml(Path(extra))
        if isinstance(own.get("sources"), dict) and isinstance(data.get("sources"), dict):
            # A config file describes your systems: its sources are not patched onto the demo's.
            own = {**own, "sources": _merge_sources(data["sources"], own["sources"])}
            data = {**data, "sources": {}}
        data = _deep_merge(data, own)
        origin = f"{BASE_YAML} + {extra}"
    data = _deep_merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin=origin + " + PERSONA_* environment")) from None

"""Feast feature store settings: paths and store types, so the same repo runs anywhere."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FeastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo_path: str = "feature_repo"
    project: str = "persona"
    registry: str = "{data_dir}/feast/registry.db"  # a file path or a SQLAlchemy URL
    online_store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = "{data_dir}/feast/online_store.db"
    redis_connection_string: str = "127.0.0.1:6379"
    services: list[str] = Field(default_factory=lambda: ["segmentation_v1", "churn_v1", "conversion_v1"])

"""Feast feature store settings: paths and store types, so the same repo runs anywhere."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FeastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo_path: str = "feature_repo"  # relative: to the cwd if it exists there, else to the project root
    project: str = "persona"
    registry: str = "{data_dir}/feast/registry.db"  # a file path or a SQLAlchemy URL (SQL registry)
    # Seconds a FeatureStore keeps the registry in memory before re-reading it (0 = forever).
    registry_cache_ttl_seconds: int = Field(600, ge=0)
    # The feature tables written by `persona features build`, i.e. the Feast sources.
    source_dir: str = "{data_dir}/features"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = "{data_dir}/feast/online_store.db"
    redis_connection_string: str = "127.0.0.1:6379"  # redis-py style "host:port[,db=0,password=...]"
    # Every FeatureService a model may use (the tag catalog may read their features).
    services: list[str] = Field(
        default_factory=lambda: [
            "segmentation_v1",
            "churn_v1",
            "conversion_v1",
            "segmentation_orders_v1",
            "churn_orders_v1",
            "conversion_leads_v1",
            "clv_v1",
            "recommend_v1",
        ]
    )

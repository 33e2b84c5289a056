"""Scoring service and CRM write-back."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    max_ids_per_request: int = Field(1000, gt=0)


class CrmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connector: Literal["sql", "http"] = "sql"
    url: str = "sqlite:///{data_dir}/raw/crm.sqlite"  # sql: SQLAlchemy URL; http: the CRM's base URL

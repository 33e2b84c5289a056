"""Where each raw source is read from and how its columns map onto Persona's names."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SourceConfig(BaseModel):
    """One source. Give `path` (CSV/Parquet, plain or .gz) or `url` + `table` (SQLAlchemy)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    url: str | None = None
    table: str | None = None
    format: Literal["auto", "csv", "parquet", "sql"] = "auto"
    # Persona's column name -> the column name in this source.
    columns: dict[str, str] = Field(default_factory=dict)
    # orders only: one row per order, or one row per product line.
    layout: Literal["orders", "order_lines"] = "orders"
    # orders/events only: what identifies the person (a ready customer id, or an email/phone to resolve).
    customer_key: Literal["customer_id", "contact"] = "contact"
    csv_sep: str = ","

    @model_validator(mode="after")
    def _one_location(self) -> "SourceConfig":
        if self.path and self.url:
            raise ValueError("give either 'path' or 'url', not both")
        if self.url and not self.table:
            raise ValueError("'url' needs 'table'")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.path or self.url)


class SourcesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: SourceConfig
    contacts: SourceConfig = Field(default_factory=SourceConfig)
    events: SourceConfig = Field(default_factory=SourceConfig)
    leads: SourceConfig = Field(default_factory=SourceConfig)

    @model_validator(mode="after")
    def _orders_required(self) -> "SourcesConfig":
        if not self.orders.configured:
            raise ValueError("orders: a 'path' or 'url' is required (orders are the one required source)")
        return self

"""Tag catalog location and history store."""

from pydantic import BaseModel, ConfigDict


class TagsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalog: str = "configs/tags.yaml"

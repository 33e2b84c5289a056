"""Settings of the synthetic data generator (`persona data generate`)."""

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GeneratorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: int = Field(5_000, gt=0, description="Number of true persons to generate.")
    seed: int = 42
    start: date = date(2024, 1, 1)
    end: date = date(2025, 12, 31)

    @model_validator(mode="after")
    def _ordered(self) -> "GeneratorConfig":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

"""Settings of the synthetic data generator (`persona data generate`)."""

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GeneratorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: int = Field(5_000, gt=0, lt=10_000_000, description="Number of true persons to generate.")
    seed: int = Field(42, ge=0)
    start: date = date(2024, 1, 1)
    end: date = date(2025, 12, 31)
    # Multiplies every error rate (duplicates, missing values, impossible values, email noise);
    # 0 writes clean data, 1 the realistic few percent. Format variety (phone styles, offsets) stays.
    mess_scale: float = Field(1.0, ge=0, le=10)
    # gzip level of orders.csv.gz / events.csv.gz: 1 is fastest, 9 smallest.
    gzip_level: int = Field(1, ge=1, le=9)
    # The value horizon `persona demo` trains with on the synthetic world. A purged value split needs
    # about three horizons of labelled snapshots: two years hold three 180-day horizons, not three
    # 365-day ones (training.clv_horizon_days stays 365 for your own data).
    demo_clv_horizon_days: int = Field(180, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "GeneratorConfig":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

"""Feature building: which snapshots, which windows."""

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FeaturesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Snapshots: explicit dates, or every `snapshot_every_days` from `first_snapshot` to `last_snapshot`.
    snapshots: list[date] = Field(default_factory=list)
    first_snapshot: date | None = date(2024, 7, 1)
    last_snapshot: date | None = date(2026, 1, 1)
    snapshot_every_days: int = Field(30, gt=0)
    # Look-back windows of frequency_<W>d / monetary_<W>d. 30, 90 and 365 are the contract's columns
    # (Feast and the models read them); extra windows add extra columns.
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 365])

    @model_validator(mode="after")
    def _has_snapshots(self) -> "FeaturesConfig":
        if not self.snapshots and not (self.first_snapshot and self.last_snapshot):
            raise ValueError("give 'snapshots' or both 'first_snapshot' and 'last_snapshot'")
        if self.first_snapshot and self.last_snapshot and self.last_snapshot < self.first_snapshot:
            raise ValueError("last_snapshot is before first_snapshot")
        missing = sorted({30, 90, 365} - set(self.windows_days))
        if missing:
            raise ValueError(
                f"windows_days must include 30, 90 and 365 (the contract's columns); missing {missing}"
            )
        if any(w <= 0 for w in self.windows_days):
            raise ValueError("windows_days must be positive numbers of days")
        return self

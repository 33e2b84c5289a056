"""Retraining schedule."""

from pydantic import BaseModel, ConfigDict, field_validator


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = "0 3 * * 1"  # Mondays 03:00
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter  # light, and validation belongs to loading the config

        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r} (five fields: min hour dom mon dow)")
        return value

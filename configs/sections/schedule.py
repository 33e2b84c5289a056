"""The two scheduled jobs: `persona refresh` (new data -> tags -> CRM) and `persona retrain`."""

from pydantic import BaseModel, ConfigDict, field_validator


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh: str = "0 2 * * *"  # every day 02:00: ingest, score, queue and deliver tag changes
    retrain: str = "0 3 * * 1"  # Mondays 03:00 (followed by a refresh)
    timezone: str = "UTC"

    @field_validator("refresh", "retrain")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter  # light, and validation belongs to loading the config

        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r} (five fields: min hour dom mon dow)")
        return value

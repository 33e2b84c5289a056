"""Retraining schedule."""

from pydantic import BaseModel, ConfigDict


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = "0 3 * * 1"  # Mondays 03:00

"""`persona refresh`: where it keeps its bookkeeping and what it reports."""

from pydantic import BaseModel, ConfigDict, Field


class RefreshConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_path: str = "{data_dir}/state/refresh.json"
    report_moves: list[str] = Field(default_factory=lambda: ["persona_name", "churn_risk", "value_tier"])

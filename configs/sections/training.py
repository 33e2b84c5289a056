"""Training: labels, splits, models, MLflow and the promotion gate."""

from pydantic import BaseModel, ConfigDict, Field


class MlflowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = "sqlite:///{data_dir}/mlflow/mlflow.db"
    artifact_root: str = "{data_dir}/mlflow/artifacts"


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    churn_horizon_days: int = Field(90, gt=0)
    conversion_horizon_days: int = Field(60, gt=0)

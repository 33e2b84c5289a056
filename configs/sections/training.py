"""Training: labels, splits, models, MLflow and the promotion gate."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ModelKind = Literal["segments", "churn", "conversion", "clv", "recommend", "uplift"]


class GateConfig(BaseModel):
    """When a new version may take the `champion` alias."""

    model_config = ConfigDict(extra="forbid")

    # Classifiers: the challenger must beat the champion on the same fresh test window by `margin` on
    # `primary_metric`, clear every floor, and never be worse than the logistic baseline.
    primary_metric: Literal["pr_auc", "roc_auc"] = "pr_auc"
    margin: float = Field(0.0, ge=0.0)
    floors: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.6})
    # Segmentation: silhouette not below a floor, and agreement (ARI) with the champion on the same
    # customers not below `ari_floor` (under it a challenger is promoted only by `persona promote --force`).
    silhouette_floor: float = Field(0.05, ge=-1.0, le=1.0)
    ari_floor: float = Field(0.8, ge=-1.0, le=1.0)
    # Uplift: held-out Qini above this floor (0 is what a random ranking scores on average) and not
    # below a random ranking's Qini on the same customers; beats the champion's by `margin`.
    uplift_floor: float = Field(0.0, ge=-1.0, le=1.0)


class SegmentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(None, ge=2)  # fixed k, or None to pick from k_range by silhouette
    k_range: list[int] = Field(default_factory=lambda: [3, 8])
    # Above this many customers K-means is fitted on a share of them (hash of customer_id and the
    # training seed; stated and logged on the run); the metrics are still computed on all of them.
    max_fit_customers: int = Field(200_000, ge=100)

    @model_validator(mode="after")
    def _range(self) -> "SegmentsConfig":
        if len(self.k_range) != 2 or not 2 <= self.k_range[0] <= self.k_range[1]:
            raise ValueError("k_range must be [low, high] with 2 <= low <= high")
        return self


class RecommendConfig(BaseModel):
    """Next best category (or product)."""

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(90, gt=0)  # "bought in the next N days" is what is predicted and evaluated
    top_k: int = Field(3, ge=1, le=20)
    level: Literal["auto", "category", "product"] = "auto"
    max_products: int = Field(500, ge=2)  # product level only for catalogs up to this size
    # Per-customer purchase histories the served recommender scores from; kept out of the registered
    # model so erasure can rewrite them (artifacts.recommend_history).
    history: str = "{data_dir}/models/recommend_history.parquet"


# The FeatureServices each model kind may be trained on, in order of preference (see `services`).
DEFAULT_SERVICES: dict[str, list[str]] = {
    "segments": ["segmentation_v1", "segmentation_orders_v1"],
    "churn": ["churn_v1", "churn_orders_v1"],
    "conversion": ["conversion_v1", "conversion_leads_v1"],
    "clv": ["clv_v1"],
    "recommend": ["recommend_v1"],
    # Uplift: the customer's behaviour at the campaign's start (the churn model's features).
    "uplift": ["churn_v1", "churn_orders_v1"],
}


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    churn_horizon_days: int = Field(90, gt=0)
    conversion_horizon_days: int = Field(60, gt=0)
    # Customer lifetime value: each customer's spend over the next `clv_horizon_days`.
    clv_horizon_days: int = Field(365, gt=0)
    # A customer is "active" at snapshot t with a completed order in the `activity_window_days` before t.
    activity_window_days: int = Field(365, gt=0)
    # Most labelled (customer, snapshot) rows a model is trained on: above it, whole customers are sampled
    # (by a hash of customer_id and `seed`, the same share in train, validation and test) before their
    # features are retrieved, so memory stops growing with customers x history; below it, the full frame.
    max_train_rows: int = Field(2_000_000, ge=100)
    # LightGBM overrides passed to models.classifier.fit_classifier (also calibration, tier_shares, ...)
    params: dict[str, float | int | str | list[float]] = Field(default_factory=dict)
    # The FeatureServices each model kind may be trained on, in order of preference: training takes the
    # first whose feature tables were all built (so the sources present decide), and records it on the
    # model version; serving reads exactly that one. A single name is a list of one.
    services: dict[ModelKind, list[str]] = Field(default_factory=lambda: dict(DEFAULT_SERVICES))
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    lock_path: str = "{data_dir}/state/retrain.lock"

    @field_validator("services", mode="before")
    @classmethod
    def _names_as_lists(cls, v: Any) -> Any:
        # A config that lists some kinds keeps the defaults of the others (a model added later trains).
        if isinstance(v, dict):
            given = {kind: [names] if isinstance(names, str) else names for kind, names in v.items()}
            return {**DEFAULT_SERVICES, **given}
        return v

    @field_validator("services")
    @classmethod
    def _at_least_one(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [kind for kind, names in v.items() if not names]
        if empty:
            raise ValueError(f"give at least one FeatureService for {', '.join(empty)}")
        return v


class MlflowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = "sqlite:///{data_dir}/mlflow/mlflow.db"
    artifact_root: str = "{data_dir}/mlflow/artifacts"
    registry_uri: str | None = None  # None: the tracking URI
    experiment_prefix: str = "persona"  # experiments and registered models: persona-segments, ...

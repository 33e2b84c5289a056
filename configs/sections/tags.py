"""Tag catalog location, fitted cut points and tag history settings."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TagsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The catalog YAML; a relative path is tried from the working directory, then from the project root.
    catalog: str = "configs/tags.yaml"
    # Quantile cut points fitted at training time (`persona tags fit`), applied by serving.
    cutpoints: str = "{data_dir}/tags/cutpoints.json"
    # How many recent changes `persona tags explain` shows.
    explain_history: int = Field(10, ge=1, le=1000)
    # The reason catalog (feature + direction -> phrase) behind persona_churn_reasons and
    # persona_conversion_reasons, and the language those CRM fields are written in.
    reasons: str = "configs/reasons.yaml"
    language: Literal["en", "zh"] = "en"

    def catalog_path(self) -> Path:
        """The catalog file, resolved so commands work from any directory of the checkout."""
        return _resolve(self.catalog)

    def reasons_path(self) -> Path:
        """The reason catalog file, resolved like `catalog_path`."""
        return _resolve(self.reasons)


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    return _PROJECT_ROOT / path

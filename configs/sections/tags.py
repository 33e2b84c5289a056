"""Tag catalog location, fitted cut points and tag history settings."""

from pathlib import Path

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

    def catalog_path(self) -> Path:
        """The catalog file, resolved so commands work from any directory of the checkout."""
        path = Path(self.catalog)
        if path.is_absolute() or path.exists():
            return path
        return _PROJECT_ROOT / path

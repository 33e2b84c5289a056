"""The business dashboard (overview, model health, customer 360) served at /dashboard by `persona serve`."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class DashboardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Labels of tags, values, personas, features and screens in every language (EN/ZH).
    texts: str = "configs/texts.yaml"
    language: Literal["en", "zh"] = "en"  # the default; `?lang=zh` or the page's switch overrides it
    session_hours: float = Field(8.0, gt=0, le=24 * 30)  # a browser session's lifetime after sign-in
    # Population stability index above which a feature's drift is flagged (0.1 watch, 0.25 act is the
    # usual reading; 0.2 warns before it is urgent).
    psi_warning: float = Field(0.2, gt=0)
    psi_bins: int = Field(10, ge=2, le=100)  # quantile bins of the training window
    recent_rows: int = Field(10, ge=1, le=200)  # orders, events and tag changes on the customer 360 page

    def texts_path(self) -> Path:
        """The texts file, resolved like the tag catalog: working directory first, then the project."""
        path = Path(self.texts)
        if path.is_absolute() or path.exists():
            return path
        return _PROJECT_ROOT / path

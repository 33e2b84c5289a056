"""A campaign, declared in YAML (`persona campaign create NAME`, `configs/campaigns/*.yaml`).

Two shapes share one model:
- a campaign Persona runs: `audience` (a tag-language expression over the catalog), `arms` with shares,
  `start`/`end`, the `outcome` (conversion = an order within `window_days`, spend, repurchase, or an
  event type) and the `minimum_effect` worth detecting;
- a finished campaign imported from a file (`source:`): which column holds the arm and how its values map
  to arms, which columns are outcomes (rate or mean) and which are pre-treatment covariates. No code is
  written per dataset; `configs/campaigns/hillstrom.yaml` is one.

Errors name the file and the field: `winback.yaml: arms: shares sum to 0.9, they must sum to 1`.
"""

from __future__ import annotations

import re
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from configs.settings import ConfigError

CAMPAIGNS_DIR = Path(__file__).resolve().parent / "campaigns"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
SHARE_TOLERANCE = 1e-9


class CampaignSpecError(ConfigError):
    """A campaign YAML is invalid; `field` is the dotted key at fault, `message` one line naming it."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ArmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    # A decimal or a fraction written as text ("1/3"), so three equal arms sum to exactly 1.
    share: float = Field(gt=0, le=1)
    control: bool = False

    @field_validator("share", mode="before")
    @classmethod
    def _fraction(cls, value: object) -> object:
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*/\s*\d+\s*", value):
            num, den = (int(x) for x in value.split("/"))
            if den == 0:
                raise ValueError("a share cannot divide by zero")
            return float(Fraction(num, den))
        return value


class OutcomeSpec(BaseModel):
    """What counts as success, measured from the campaign's start for `window_days`:
    conversion (0/1: an order), spend (net amount), repurchase (0/1: an order by a customer who had
    ordered before the start; others are left out), event (0/1: an event of `event_type`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["conversion", "spend", "repurchase", "event"]
    window_days: int = Field(30, gt=0, le=3650)
    event_type: str | None = None

    @model_validator(mode="after")
    def _event_type_iff_event(self) -> OutcomeSpec:
        if self.kind == "event" and not self.event_type:
            raise ValueError("an `event` outcome needs `event_type`")
        if self.kind != "event" and self.event_type:
            raise ValueError(f"`event_type` only applies to kind `event`, not {self.kind!r}")
        return self

    @property
    def binary(self) -> bool:
        return self.kind != "spend"

    @property
    def label(self) -> str:
        return self.event_type if self.kind == "event" else self.kind


class SourceOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    type: Literal["rate", "mean"]


class CampaignSource(BaseModel):
    """Where a finished campaign's rows live and how to read them (relative paths: the shared data
    folder, `$PERSONA_SHARED_DATA`)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    separator: str = ","
    id_column: str | None = None  # none: the 1-based row number is the customer id
    arm_column: str
    arms: dict[str, str]  # value in the file -> arm name
    outcomes: dict[str, SourceOutcome]  # outcome name -> column and type; the first is the primary
    covariates: list[str] = Field(default_factory=list)  # known before treatment; uplift features
    categorical: list[str] = Field(default_factory=list)  # covariates read as categories

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSource:
        if not self.outcomes:
            raise ValueError("`outcomes` needs at least one outcome column")
        stray = sorted(set(self.categorical) - set(self.covariates))
        if stray:
            raise ValueError(f"`categorical` names {stray}, which are not in `covariates`")
        return self


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    audience: str | None = None  # tag-language expression over the catalog; required unless imported
    arms: list[ArmSpec] = Field(min_length=2)
    start: date | None = None
    end: date | None = None
    outcome: OutcomeSpec | None = None
    minimum_effect: float | None = Field(None, gt=0)  # absolute, in the outcome's unit
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    # Assignment hashes (salt, campaign, customer id); a new salt re-randomises a re-run of a campaign.
    salt: str = ""
    breakdown_by: list[str] = Field(default_factory=lambda: ["persona_name", "value_tier"])
    source: CampaignSource | None = None

    @field_validator("arms")
    @classmethod
    def _arms(cls, arms: list[ArmSpec]) -> list[ArmSpec]:
        total = sum(a.share for a in arms)
        if abs(total - 1) > SHARE_TOLERANCE:
            raise ValueError(f"shares sum to {total:g}, they must sum to 1")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        controls = [a.name for a in arms if a.control]
        if len(controls) != 1:
            raise ValueError(f"exactly one arm must be `control: true`, got {len(controls)}")
        return arms

    @model_validator(mode="after")
    def _shape(self) -> CampaignSpec:
        if self.source is None:
            for key in ("audience", "start", "end", "outcome"):
                if getattr(self, key) in (None, ""):
                    raise CampaignSpecError(f"`{key}` is required for a campaign Persona runs", field=key)
        else:
            unknown = sorted(set(self.source.arms.values()) - {a.name for a in self.arms})
            if unknown:
                raise CampaignSpecError(f"maps to undeclared arm(s) {unknown}", field="source.arms")
        if self.start and self.end and self.end <= self.start:
            raise CampaignSpecError(f"{self.end} is not after start {self.start}", field="end")
        return self

    @property
    def control(self) -> str:
        return next(a.name for a in self.arms if a.control)

    @property
    def shares(self) -> dict[str, float]:
        return {a.name: a.share for a in self.arms}

    @property
    def tag_key(self) -> str:
        """The CRM tag that carries a customer's arm."""
        return f"persona_campaign_{self.name}"


def parse_campaign(raw: object, *, origin: str) -> CampaignSpec:
    """Validate a loaded YAML mapping; the first problem becomes one line naming `origin` and the field."""
    if not isinstance(raw, dict):
        raise CampaignSpecError(f"{origin}: the top level must be a mapping of keys")
    try:
        return CampaignSpec(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_exc = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_exc, CampaignSpecError):
            field, msg = ctx_exc.field, ctx_exc.message
        else:
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
        raise CampaignSpecError(f"{origin}: {field}: {msg}", field=field) from None


def load_campaign(path: str | Path) -> CampaignSpec:
    """Read a campaign YAML; a bare name means `configs/campaigns/<name>.yaml`."""
    p = Path(path)
    if p.suffix not in (".yaml", ".yml"):
        p = CAMPAIGNS_DIR / f"{p.name}.yaml"
    if not p.is_file():
        raise CampaignSpecError(f"campaign file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CampaignSpecError(f"{p}: not valid YAML: {exc}") from None
    return parse_campaign(raw, origin=p.name)

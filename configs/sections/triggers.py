"""Triggers: declarative rules that turn a tag change into actions (a signed webhook)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebhookAction(BaseModel):
    """POST the change as JSON to `url`, signed with HMAC-SHA256 of a secret read from the environment
    variable `secret_env` (never from a file)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    secret_env: str = "PERSONA_WEBHOOK_SECRET"
    timeout_seconds: float = 10.0


class TriggerRule(BaseModel):
    """When tag `tag` changes to `becomes` (any value when null) for a customer whose other tags match
    `where` (tag -> value or list of values, after this run), run the actions."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    tag: str
    becomes: str | list[str] | None = None
    where: dict[str, str | list[str]] = Field(default_factory=dict)
    webhook: WebhookAction

    @field_validator("becomes")
    @classmethod
    def _as_list(cls, value: str | list[str] | None) -> list[str] | None:
        return [value] if isinstance(value, str) else value


class TriggersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[TriggerRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[TriggerRule]) -> list[TriggerRule]:
        names = [r.name for r in rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"trigger names must be unique: {', '.join(dup)}")
        return rules

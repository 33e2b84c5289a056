"""Triggers: declarative rules that turn a tag change into actions: a signed webhook, a CRM task or
note on the customer's contact record, a list membership in a marketing-automation tool."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from configs.sections import unique_names
from configs.sections.segments import Where, not_blank

# what a task or note text may name: {trigger} {customer_id} {tag} {old_value} {new_value} {changed_at}
TEMPLATE_FIELDS = ("trigger", "customer_id", "tag", "old_value", "new_value", "changed_at")


def _check_template(text: str) -> str:
    import string

    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None and name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown field {{{name}}} (one of {', '.join(TEMPLATE_FIELDS)})")
    return text


class WebhookAction(BaseModel):
    """POST the change as JSON to `url`, signed with HMAC-SHA256 of a secret read from the environment
    variable `secret_env` (never from a file)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    secret_env: str = "PERSONA_WEBHOOK_SECRET"
    timeout_seconds: float = 10.0


class TaskAction(BaseModel):
    """A task on the customer's CRM contact record (HubSpot: a task associated with the contact; the
    SQL CRM: a row of `persona_crm_activities`). Texts may name {trigger}, {customer_id}, {tag},
    {old_value}, {new_value}, {changed_at}."""

    model_config = ConfigDict(extra="forbid")

    subject: str = "Persona: {trigger}: {tag} {old_value} -> {new_value}"
    body: str = "Customer {customer_id}: {tag} changed from {old_value} to {new_value} at {changed_at}."
    priority: Literal["LOW", "MEDIUM", "HIGH"] = "MEDIUM"
    due_in_days: int = Field(default=1, ge=0, le=365)  # after the change

    @field_validator("subject", "body")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value)


class NoteAction(BaseModel):
    """A note on the customer's CRM contact record's timeline."""

    model_config = ConfigDict(extra="forbid")

    body: str = "Persona {trigger}: {tag} changed from {old_value} to {new_value} at {changed_at}."

    @field_validator("body")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value)


class ListAction(BaseModel):
    """Add the customer to the list `name` of the marketing-automation tool (HubSpot lists contract;
    the SQL CRM: `persona_list_members`). Not one of the lists `segments.sync` keeps in step."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)


ACTIONS = ("webhook", "crm_task", "crm_note", "add_to_list")


class TriggerRule(BaseModel):
    """When tag `tag` changes to `becomes` (any value when null) for a customer whose tags after this
    run match `where`, run the actions (at least one of `webhook`, `crm_task`, `crm_note`,
    `add_to_list`; each is delivered on its own). `where` is a tag expression in the catalog's language
    (as `segments.sync`: `value_tier = 'top' and persona_name != 'Lapsed'`) or, in short, a mapping
    tag -> value or list of values that must all hold; empty: every customer. The expression is checked
    against the tag catalog when `persona refresh` loads the config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    tag: str
    becomes: str | list[str] | None = None
    where: dict[str, str | list[str]] | str = Field(default_factory=dict)
    webhook: WebhookAction | None = None
    crm_task: TaskAction | None = None
    crm_note: NoteAction | None = None
    add_to_list: ListAction | None = None

    @field_validator("becomes")
    @classmethod
    def _as_list(cls, value: str | list[str] | None) -> list[str] | None:
        return [value] if isinstance(value, str) else value

    @field_validator("where")
    @classmethod
    def _not_blank(cls, value: Where) -> Where:
        return not_blank(value, example="value_tier = 'top' and persona_name != 'Lapsed'")

    @model_validator(mode="after")
    def _some_action(self) -> TriggerRule:
        if not self.actions:
            raise ValueError(f"trigger {self.name}: give at least one action ({', '.join(ACTIONS)})")
        return self

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(a for a in ACTIONS if getattr(self, a) is not None)


class TriggersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[TriggerRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[TriggerRule]) -> list[TriggerRule]:
        return unique_names(rules, "trigger")

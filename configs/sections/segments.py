"""Segment sync: customers whose tags match a rule, kept in step as a list in the CRM."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from configs.sections import unique_names

Where = dict[str, str | list[str]] | str  # a tag expression, or tag -> value(s) that must all hold


def not_blank(value: Where, *, example: str) -> Where:
    """A `where` given as text must say something (else one line with an `example`)."""
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"a tag expression, e.g. {example}")
    return value


class SegmentRule(BaseModel):
    """Customers whose current tags match `where` are members of the CRM list `list_name` (default:
    `name`). `where` is a tag expression (the catalog's language over current tag values, e.g.
    `churn_risk = 'high' and (value_tier in ('top', 'high') or clv_12m > 500)`) or, in short, a mapping
    tag -> value or list of values that must all hold. The expression is checked against the tag catalog
    when `persona refresh` loads the config (configs import nothing of the expression language)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    where: dict[str, str | list[str]] | str = Field(min_length=1)
    list_name: str = ""

    @field_validator("where")
    @classmethod
    def _not_blank(cls, value: Where) -> Where:
        return not_blank(value, example="churn_risk = 'high' and value_tier = 'top'")

    def model_post_init(self, _context: object) -> None:
        if not self.list_name:
            self.list_name = self.name


class SegmentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sync: list[SegmentRule] = Field(default_factory=list)

    @field_validator("sync")
    @classmethod
    def _unique_names(cls, rules: list[SegmentRule]) -> list[SegmentRule]:
        return unique_names(rules, "segment")

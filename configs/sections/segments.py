"""Segment sync: customers whose tags match a rule, kept in step as a list in the CRM."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SegmentRule(BaseModel):
    """Customers whose current tags match every `where` entry (tag -> value or list of values) are
    members of the CRM list `list_name` (default: `name`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    where: dict[str, str | list[str]] = Field(min_length=1)
    list_name: str = ""

    def model_post_init(self, _context: object) -> None:
        if not self.list_name:
            self.list_name = self.name


class SegmentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sync: list[SegmentRule] = Field(default_factory=list)

    @field_validator("sync")
    @classmethod
    def _unique_names(cls, rules: list[SegmentRule]) -> list[SegmentRule]:
        names = [r.name for r in rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"segment names must be unique: {', '.join(dup)}")
        return rules

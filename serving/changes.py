"""The record that crosses from the tag store to the outbox and on to the CRM."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TagChange:
    """One tag of one customer changed value. Idempotency key: (customer, tag, value, produced_by)."""

    customer_id: str
    tag: str  # catalog key
    crm_field: str  # CRM property / column the catalog maps the tag to
    old_value: str | None  # values travel as strings; None = unset
    new_value: str | None
    changed_at: datetime  # UTC
    produced_by: str  # rule version (e.g. "rule:rfm_segment@v1") or model version ("model:persona-churn@3")
    inputs: dict[str, Any] = field(default_factory=dict)  # the features/outputs that mattered

    @property
    def idempotency_key(self) -> str:
        return f"{self.customer_id}|{self.tag}|{self.new_value}|{self.produced_by}"

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
    # Set by the outbox when the change is queued: a stable id of this change, and its place in the
    # sequence of changes of the same (customer, tag). A CRM that stores `seq` applies a change only if
    # it is newer than what it holds, so a flip back lands and a replay does not.
    change_id: str | None = field(default=None, compare=False)
    seq: int | None = field(default=None, compare=False)

    @property
    def idempotency_key(self) -> str:
        return f"{self.customer_id}|{self.tag}|{self.new_value}|{self.produced_by}"

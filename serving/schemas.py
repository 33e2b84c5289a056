"""Request and response models of the scoring API (the contract the CRM codes against)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, TypeAdapter

MAX_IDS = 1000

# Exactly what the OpenAPI document says (1 to 64 characters): ids are opaque, nothing is stripped, so an
# id padded with spaces is a different (unknown) id, never a 400 the schema did not announce.
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CustomerIds = Annotated[list[CustomerId], Field(min_length=1, max_length=MAX_IDS)]
# true or false, as the schema says: pydantic's lax mode would also take 0/1 and "yes"
WriteBack = Annotated[bool, Strict()]
# reasons per score, true or false; left out = true up to serving.explain_up_to ids (100), false above.
# Declared as a plain boolean (an explicit null is refused like any other non-boolean).
Explain = Annotated[bool, Strict()]

ItemStatus = Literal["ok", "not_found", "consent_withdrawn"]


class Reason(BaseModel):
    """One driver of a score: a feature, its value, and its contribution to the raw (log-odds) score."""

    feature: str
    value: float | str | None
    contribution: float


class ModelScore(BaseModel):
    """A churn or conversion score. `probability` is null when the model declined to score."""

    probability: float | None = None
    tier: str | None = None
    reasons: list[Reason] = Field(default_factory=list)
    model_version: str | None = None
    not_scored_reason: str | None = None


class ValueReason(BaseModel):
    """A driver of the predicted value: a feature, its value, and its contribution to the log of the
    value (+0.69 doubles it); null contribution for the probabilistic model, which reads the history."""

    feature: str
    value: float | str | None
    contribution: float | None = None


class ValueScore(BaseModel):
    """Predicted spend over the next `horizon_days` (customer lifetime value) and its tier."""

    predicted_value: float | None = None
    horizon_days: int | None = None
    tier: str | None = None  # top | high | standard (top 10% / next 20% / rest, cut on validation)
    reasons: list[ValueReason] = Field(default_factory=list)
    model_version: str | None = None
    not_scored_reason: str | None = None


class Recommendation(BaseModel):
    """One category (or product) the customer is likely to buy in the next horizon."""

    item: str
    score: float  # relative: higher is more likely (comparable within one customer's list)
    kind: Literal["buy_again", "new"]  # bought before, or new to this customer
    reason: str  # "bought 4 times, last 20 days ago"; "customers who buy books also buy toys"


class Recommendations(BaseModel):
    """Next best categories: the top k overall (`items`) and the top k never bought (`new`)."""

    level: str | None = None  # category | product
    horizon_days: int | None = None
    items: list[Recommendation] = Field(default_factory=list)
    new: list[Recommendation] = Field(default_factory=list)
    history_as_of: str | None = None  # the purchases the lists read end here (the model's data clock)
    model_version: str | None = None
    not_scored_reason: str | None = None


class Segment(BaseModel):
    segment_id: int | None = None
    persona: str | None = None
    model_version: str | None = None
    not_scored_reason: str | None = None


class Freshness(BaseModel):
    """When the features of one feature view were computed (the snapshot they describe)."""

    as_of: str | None = None  # ISO-8601 UTC
    age_days: float | None = None
    status: Literal["present", "stale", "not_found"]


class ScoreItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str  # Persona's id of the customer
    requested_id: str | None = None  # the id as asked: the Persona id or a business key (contact id, ...)
    status: ItemStatus
    reason: str | None = None  # why there is no score (status != ok)
    degraded: bool = False  # some features were stale or missing and documented defaults were used
    warnings: list[str] = Field(default_factory=list)
    segment: Segment | None = None
    churn: ModelScore | None = None
    conversion: ModelScore | None = None
    value: ValueScore | None = None
    recommendations: Recommendations | None = None
    tags: dict[str, str | float | int | bool | None] = Field(default_factory=dict)
    feature_freshness: dict[str, Freshness] = Field(default_factory=dict)
    written_back: int = 0  # tag changes queued for the CRM for this customer


class ScoreResponse(BaseModel):
    items: list[ScoreItem]
    model_versions: dict[str, str]
    # The model set that answered (also the `X-Persona-Model-Set` header and `/readyz`'s `model_set`):
    # a hot reload swaps whole sets, so every answer's versions come from this one set.
    model_set: str | None = None
    scored: int
    not_found: int
    consent_withdrawn: int
    queued_changes: int
    # The data's clock the answer was judged against (ISO-8601 UTC): feature ages and staleness are
    # measured from it, not from the wall clock. It is the end the online store was materialized to.
    as_of: str | None = None


# The scorer builds its payload field for field as `ScoreResponse` (tests/service hold it to that), so the
# service encodes it without validating 1,000 nested items again. Encoded by pydantic's serializer for
# plain Python values (Rust): about 4x faster than the stdlib's `json.dumps` on a 1,000-customer answer
# (2-3 MB), the same JSON values (UTF-8 instead of \u escapes, no spaces), and like the declared model it
# writes a non-finite float as null (`ser_json_inf_nan`; the scorer already turns inf into NaN = missing).
_PAYLOAD = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="null"))


def response_json(payload: dict[str, Any]) -> bytes:
    """A `ScoreResponse` payload (plain dicts, lists, str, int, float, bool, None) as JSON bytes."""
    return _PAYLOAD.dump_json(payload)

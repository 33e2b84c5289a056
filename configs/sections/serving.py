"""Scoring service and CRM write-back."""

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: object) -> object:
    """`90`, `90s`, `30m`, `24h`, `7d` -> seconds (other inputs are left to pydantic to refuse)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration (e.g. 90s, 30m, 24h, 7d)")
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return value


# seconds, written as a number or with a unit: 90s, 30m, 24h, 7d
Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class ServingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    # The API takes 1 to 1,000 ids per request (serving/schemas.py: MAX_IDS); that is the contract.
    workers: int = Field(2, gt=0, le=64)
    timeout_seconds: float = Field(10.0, gt=0)  # a request still running then gets 504
    max_concurrency: int = Field(64, gt=0)  # requests in flight per service; more get 429
    top_reasons: int = Field(3, ge=0, le=20)
    dispatch_in_service: bool = True  # run the outbox dispatcher in a background thread of the service
    # how often the service re-reads the consent list (state database): a withdrawal answers
    # `consent_withdrawn` within this many seconds, without a restart
    consent_poll_seconds: float = Field(2.0, gt=0, le=300)
    # how often each worker checks the registry's champion aliases and the tag catalog / cut-point
    # files: a promoted champion serves within this many seconds (plus its load time), without a restart
    reload_poll_seconds: float = Field(30.0, gt=0, le=3600)
    # Admission by cost: customers in flight per worker (a 1,000-id request costs 1,000). A request that
    # would go beyond gets 429 with Retry-After at once instead of queueing into a 504. Scoring is
    # CPU-bound under one interpreter lock per worker: two bulk requests at once in a worker finish no
    # sooner than one after the other, each just takes twice as long (and, on a busy machine, past
    # `timeout_seconds`), so the default lets one full request run per worker, with room beside it for
    # the one-customer calls a CRM makes most.
    max_inflight_customers: int = Field(1200, ge=1000)
    # `explain` (reasons per score) defaults to true up to this many ids per request, false above
    explain_up_to: int = Field(100, ge=0, le=1000)
    # request bodies larger than this are refused with 413 before they are read. The largest valid
    # request (1,000 ids of 64 characters, each JSON-escaped as \uXXXX\uXXXX) is about 770 KB: a lower
    # limit refuses some valid requests (plain ASCII ids: about 70 KB).
    max_body_bytes: int = Field(1_048_576, ge=65_536)
    batch_chunk_size: int = Field(100_000, gt=0)  # customers per chunk in `persona score --all`
    # POST /v1/noop (validates the request, does nothing): the latency floor bench/bench_serving.py
    # measures against. Off in production; never in the public OpenAPI document.
    benchmark_endpoint: bool = False
    # Who each model may score, in the tag expression language over features. Outside it the score is
    # withheld with a reason, because a default would mislead (e.g. churn risk of someone who never
    # bought). Same populations as the training labels (training/labels.py).
    populations: dict[str, str] = Field(
        default_factory=lambda: {"churn": "frequency_365d > 0", "conversion": "is_open_lead = 1"}
    )


class CrmConfig(BaseModel):
    """CRM write-back: which connector, where, and how the outbox dispatcher retries."""

    model_config = ConfigDict(extra="forbid")

    connector: Literal["sql", "http"] = "sql"
    url: str = "sqlite:///{data_dir}/raw/crm.sqlite"  # sql: SQLAlchemy URL; http: the CRM's base URL
    # sql + SQLite only: create the file when it does not exist (an embedded CRM of its own, for
    # sources without one). Off by default: a mistyped path must not become an empty CRM.
    create: bool = False
    # http only: bearer token (env PERSONA_CRM__TOKEN; a SecretStr so it is never printed or logged)
    token: SecretStr | None = None
    # http only: the unique contact property HubSpot's batch upsert matches records by
    id_property: str = "persona_contact_id"
    # Which key addresses a customer's record in the CRM when it has no CRM contact id (contact ids,
    # from the contacts source, always come first): `orders` = the orders' customer number
    # (`customer_key: customer_id`), `leads` = the lead id, `events` = the id events name the user by,
    # `contacts` = contact ids only. A customer with no such key is reported (dead letter), never sent.
    record_key: Literal["contacts", "orders", "leads", "events"] = "orders"
    batch_size: int = Field(100, gt=0, le=10000)  # http requests carry at most 100 records regardless
    # Retries are bounded by time, not by a count: an entry that still fails this long after it was
    # queued is dead-lettered (`persona crm replay` re-sends). Records the CRM rejects as invalid die
    # at once. An outage shorter than this loses nothing.
    give_up_after: Duration = 86400.0
    base_delay_seconds: float = Field(1.0, gt=0)  # first retry delay; doubles per attempt, with jitter
    # the cap of the back-off, and of the circuit breaker's sleep while the CRM refuses connections
    max_delay_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)  # a claimed batch returns to the queue if not settled by then
    timeout_seconds: float = Field(10.0, gt=0)  # http connect/read time-out
    poll_seconds: float = Field(2.0, gt=0)  # idle wait of the background dispatcher

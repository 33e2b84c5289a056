"""Scoring service and CRM write-back."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
    # http only: bearer token (env PERSONA_CRM__TOKEN; a SecretStr so it is never printed or logged)
    token: SecretStr | None = None
    # http only: the unique contact property HubSpot's batch upsert matches records by
    id_property: str = "persona_contact_id"
    batch_size: int = Field(100, gt=0, le=10000)  # http requests carry at most 100 records regardless
    max_attempts: int = Field(8, gt=0)  # transient failures before an entry is dead-lettered
    base_delay_seconds: float = Field(1.0, gt=0)  # first retry delay; doubles per attempt, with jitter
    max_delay_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)  # a claimed batch returns to the queue if not settled by then
    timeout_seconds: float = Field(10.0, gt=0)  # http connect/read time-out
    poll_seconds: float = Field(2.0, gt=0)  # idle wait of the background dispatcher

"""The customer 360 page's data: find a customer by Persona id or by the business's own key, then the
profile, scores with their reasons, every current tag with what produced it, the tag history, recent
orders and events, the campaigns they were assigned to, and the ids the customer is known by. Pseudonymous throughout: the clean tables hold
no names, phones or emails, and none are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from configs.settings import Settings
from serving.dashboard import sources
from serving.dashboard.campaigns import customer_campaigns

PERSONA_ID = re.compile(r"P[0-9a-f]{12}")
# Sources whose record ids are the business's own keys of a customer, in the order a key is looked up
# (an order or event id names a transaction, not a customer). `source_key`, where the identity map has
# it, is the key a record named the customer by (contact id, customer number, lead id).
KEY_SOURCES = ("contacts", "leads")


@dataclass
class Customer:
    customer_id: str
    requested_id: str
    profile: dict[str, Any] = field(default_factory=dict)
    consent_withdrawn: bool = False
    known_as: list[tuple[str, str]] = field(default_factory=list)  # (source, business key)
    score: dict[str, Any] | None = None  # the scoring API's item, when the service has models loaded
    batch_scores: dict[str, Any] | None = None  # the last batch scoring's row otherwise
    tags: list[Any] = field(default_factory=list)  # serving.tag_store.CurrentTag
    history: list[Any] = field(default_factory=list)  # serving.changes.TagChange
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    campaigns: list[Any] = field(default_factory=list)  # serving.dashboard.campaigns.Assignment


SOURCE_ORDER = ("contacts", "orders", "leads")  # which customer a key names when several sources share it


def _keys(settings: Settings) -> tuple[Path, Path] | None:
    return sources.key_lookups(settings, KEY_SOURCES)


def resolve(settings: Settings, query: str) -> str | None:
    """The Persona id of `query`: itself if it is a known Persona id, else the customer a business key
    (contact id, customer number, lead id) belongs to. Both are lookups in sorted copies (one row group
    read each), never a scan of the customer base."""
    query = query.strip()
    if not query:
        return None
    if PERSONA_ID.fullmatch(query):
        found = sources.lookup(
            sources.by_customer(settings, "customers"), "customer_id", query, ["customer_id"]
        )
        if len(found):
            return query
    paths = _keys(settings)
    if paths is None:
        return None
    hits = sources.lookup(paths[0], "key", query, ["source", "key", "customer_id"])
    if hits.empty:
        return None
    order = {s: i for i, s in enumerate(SOURCE_ORDER)}
    hits = hits.assign(_o=hits["source"].map(lambda s: order.get(s, len(order)))).sort_values("_o")
    return str(hits["customer_id"].iloc[0])


def known_as(settings: Settings, customer_id: str) -> list[tuple[str, str]]:
    """The business keys this customer is known by: CRM contact ids, lead ids, customer numbers."""
    paths = _keys(settings)
    if paths is None:
        return []
    mine = sources.lookup(paths[1], "customer_id", customer_id, ["source", "key"])
    return list(dict.fromkeys(zip(mine["source"].astype(str), mine["key"].astype(str), strict=True)))


def _recent(settings: Settings, table: str, ts: str, customer_id: str, limit: int) -> pd.DataFrame:
    frame = sources.lookup(
        sources.by_customer(settings, table),
        "customer_id",
        customer_id,
        [
            ts,
            "order_id",
            "amount",
            "discount",
            "quantity",
            "category",
            "is_returned",
            "is_cancelled",
            "event_type",
            "channel",
        ],
    )
    if frame.empty or ts not in frame.columns:
        return frame
    return frame.sort_values(ts, ascending=False).head(limit).reset_index(drop=True)


def load_customer(
    settings: Settings, query: str, *, scorer: Any = None, tag_store: Any = None
) -> Customer | None:
    """Everything the 360 page shows of one customer, or None if `query` names nobody."""
    customer_id = resolve(settings, query)
    if customer_id is None:
        return None
    profile_frame = sources.lookup(
        sources.by_customer(settings, "customers"),
        "customer_id",
        customer_id,
        [
            "customer_id",
            "consent_profiling",
            "signup_ts",
            "first_seen_ts",
            "region",
            "city",
            "acquisition_channel",
            "customer_type",
            "is_customer",
            "sources",
        ],
    )
    profile = profile_frame.iloc[0].to_dict() if len(profile_frame) else {}
    withdrawn = profile.get("consent_profiling") is False or profile.get("consent_profiling") == False  # noqa: E712
    customer = Customer(
        customer_id=customer_id, requested_id=query.strip(), consent_withdrawn=bool(withdrawn)
    )
    customer.profile = {k: v for k, v in profile.items() if k not in ("customer_id", "consent_profiling")}
    customer.known_as = known_as(settings, customer_id)
    limit = settings.dashboard.recent_rows
    customer.orders = _recent(settings, "orders", "order_ts", customer_id, limit)
    customer.events = _recent(settings, "events", "event_ts", customer_id, limit)
    if customer.consent_withdrawn:  # not profiled: no scores, no tags, no history shown
        return customer
    if scorer is not None:
        payload = scorer.score(
            [customer_id], write_back=False, now=pd.Timestamp.now(tz="UTC").to_pydatetime()
        )
        customer.score = payload["items"][0] if payload.get("items") else None
    if customer.score is None:
        path = sources.by_customer(settings, "scores")
        if path is not None:
            row = sources.lookup(path, "customer_id", customer_id, pq.read_schema(path).names)
            customer.batch_scores = row.iloc[0].to_dict() if len(row) else None
    if tag_store is not None:
        customer.tags = tag_store.current(customer_id)
        customer.history = tag_store.history(customer_id, limit=limit * 2)
        customer.campaigns = customer_campaigns(tag_store.engine, customer_id)
    return customer

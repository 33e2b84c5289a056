"""One FeatureView per feature table, same name, explicit schema (docs/CONTRACTS.md "Feature tables").

TTL: snapshots are taken every 30 days, so the latest snapshot is at most 30 days old when the next one
is due. A TTL of 45 days (30 + 15 days of grace for a late build) means a row looked up more than 45
days after its snapshot counts as missing (training) or stale (online): one missed snapshot shows up
instead of silently serving values that are two periods old.
"""

from datetime import timedelta

from entities import customer
from feast import FeatureView, Field
from feast.types import Float64, Int64, String
from sources import (
    customer_engagement_source,
    customer_leads_source,
    customer_profile_source,
    customer_transactions_source,
)

SNAPSHOT_TTL = timedelta(days=45)
_TAGS = {"owner": "features", "snapshot_every_days": "30"}

customer_transactions = FeatureView(
    name="customer_transactions",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="recency_days", dtype=Float64, description="Days from the last order to the snapshot."),
        Field(name="frequency_30d", dtype=Int64),
        Field(name="frequency_90d", dtype=Int64),
        Field(name="frequency_365d", dtype=Int64),
        Field(name="monetary_30d", dtype=Float64),
        Field(name="monetary_90d", dtype=Float64),
        Field(name="monetary_365d", dtype=Float64),
        Field(name="avg_order_value_365d", dtype=Float64),
        Field(name="frequency_trend_90d", dtype=Float64),
        Field(name="monetary_trend_90d", dtype=Float64),
        Field(name="return_rate_365d", dtype=Float64),
        Field(name="discount_rate_365d", dtype=Float64),
        Field(name="category_breadth_365d", dtype=Int64),
        Field(name="orders_lifetime", dtype=Int64),
        Field(name="monetary_lifetime", dtype=Float64),
        Field(name="tenure_days", dtype=Float64, description="Days from the first order to the snapshot."),
    ],
    source=customer_transactions_source,
    online=True,
    tags=_TAGS,
    description="Orders: recency, frequency, monetary value, trends, returns and discounts.",
)

customer_engagement = FeatureView(
    name="customer_engagement",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="visits_30d", dtype=Int64),
        Field(name="visits_90d", dtype=Int64),
        Field(name="page_views_90d", dtype=Int64),
        Field(name="product_views_90d", dtype=Int64),
        Field(name="email_opens_90d", dtype=Int64),
        Field(name="email_clicks_90d", dtype=Int64),
        Field(name="email_click_rate_90d", dtype=Float64),
        Field(name="support_tickets_90d", dtype=Int64),
        Field(name="complaints_90d", dtype=Int64),
        Field(name="complaints_365d", dtype=Int64),
        Field(name="days_since_last_event", dtype=Float64),
    ],
    source=customer_engagement_source,
    online=True,
    tags=_TAGS,
    description="Behaviour events: visits, views, e-mail, support tickets and complaints.",
)

customer_leads = FeatureView(
    name="customer_leads",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="lead_engagement_score", dtype=Float64),
        Field(name="lead_age_days", dtype=Float64),
        Field(name="lead_source", dtype=String),
        Field(name="is_open_lead", dtype=Int64),
    ],
    source=customer_leads_source,
    online=True,
    tags=_TAGS,
    description="Marketing leads: engagement score, age, source, still open.",
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="region", dtype=String),
        Field(name="customer_type", dtype=String),
        Field(name="acquisition_channel", dtype=String),
        Field(name="signup_tenure_days", dtype=Float64),
    ],
    source=customer_profile_source,
    online=True,
    tags=_TAGS,
    description="CRM profile: region, customer type, acquisition channel, tenure since sign-up.",
)

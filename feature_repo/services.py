"""Versioned FeatureServices: the one place that says which features each model uses.

Training retrieves by service and records the service name on the model version; serving reads the
same service. Change a list by adding `<model>_v2`, never by editing a released version.

Which service a model is trained on follows from the sources present (`training.services` lists each
model's services in order of preference; the first whose feature tables were all built is used): with
events, `segmentation_v1` / `churn_v1`; from orders alone, `segmentation_orders_v1` / `churn_orders_v1`;
`conversion_v1` needs leads, events and CRM contacts, `conversion_leads_v1` leads only.
"""

from feast import FeatureService
from views import customer_engagement, customer_leads, customer_profile, customer_transactions

_SEGMENT_RFM = [
    "recency_days",
    "frequency_90d",
    "frequency_365d",
    "monetary_90d",
    "monetary_365d",
    "avg_order_value_365d",
    "category_breadth_365d",
    "orders_lifetime",
    "monetary_lifetime",
    "tenure_days",
]

segmentation_v1 = FeatureService(
    name="segmentation_v1",
    features=[
        customer_transactions[_SEGMENT_RFM],
        customer_engagement[
            ["visits_90d", "page_views_90d", "email_opens_90d", "email_clicks_90d", "days_since_last_event"]
        ],
    ],
    tags={"model": "segmentation", "version": "1"},
    description="RFM and basic engagement, for customer segments and persona names.",
)

churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_transactions, customer_engagement],
    tags={"model": "churn", "version": "1"},
    description="All transaction features (incl. returns, discounts, trends) and engagement (incl. complaints).",
)

conversion_v1 = FeatureService(
    name="conversion_v1",
    features=[
        customer_leads,
        customer_engagement,
        customer_profile[["region", "customer_type", "acquisition_channel", "signup_tenure_days"]],
    ],
    tags={"model": "conversion", "version": "1"},
    description="Lead features, engagement and profile categoricals, for lead conversion.",
)

# Orders alone (no events, no CRM contacts, no leads): the same models on the transactions view.
segmentation_orders_v1 = FeatureService(
    name="segmentation_orders_v1",
    features=[customer_transactions[_SEGMENT_RFM]],
    tags={"model": "segmentation", "version": "1", "sources": "orders"},
    description="RFM and lifecycle from orders alone, for customer segments and persona names.",
)

churn_orders_v1 = FeatureService(
    name="churn_orders_v1",
    features=[customer_transactions],
    tags={"model": "churn", "version": "1", "sources": "orders"},
    description="All transaction features (incl. returns, discounts, trends), from orders alone.",
)

conversion_leads_v1 = FeatureService(
    name="conversion_leads_v1",
    features=[customer_leads],
    tags={"model": "conversion", "version": "1", "sources": "leads"},
    description="Lead features alone, for lead conversion without events or CRM contacts.",
)

clv_v1 = FeatureService(
    name="clv_v1",
    features=[customer_transactions],
    tags={"model": "clv", "version": "1"},
    description="All transaction features, for each customer's spend over the value horizon (orders only, so "
    "it serves every world that has orders).",
)

recommend_v1 = FeatureService(
    name="recommend_v1",
    features=[customer_transactions[["orders_lifetime", "recency_days", "category_breadth_365d"]]],
    tags={"model": "recommend", "version": "1"},
    description="Order-history presence and freshness for next-best-category; the category histories "
    "themselves travel with the registered model (as of its training data's clock).",
)

"""The one entity: a resolved customer (`customer_id` is "P" + 12 hex, see docs/CONTRACTS.md)."""

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A resolved customer (one person across CRM, orders, events and leads).",
)

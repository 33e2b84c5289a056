"""Mainland China mobiles as people write them (`+86`, `0086`, `86` in front, or the bare 11 digits)
resolve to one person across contacts, orders, events and leads, next to emails and contact ids."""

from __future__ import annotations

import pandas as pd

from configs.settings import load_settings
from features.ingest import load_clean, run_ingest

CONTACTS = [
    ("C1", "13800138000", "ann@example.com"),  # the bare 11-digit mobile
    ("C2", None, "bob@example.com"),
]
ORDERS = [
    ("O1", "8613800138000"),  # 13 digits: the country code without + or 00
    ("O2", "+86 138 0013 8000"),
    ("O3", "0086-138-0013-8000"),
    ("O4", "86 138 0013 8000"),
    ("O5", "ANN@example.com"),  # by email
    ("O6", "C1"),  # by contact id
    ("O7", "8613900139000"),  # Bob's mobile, 13 digits ...
    ("O8", "bob@example.com"),
]
EVENTS = [
    ("E1", "008613800138000"),
    ("E2", "C1"),
    ("E3", "13900139000"),  # ... and Bob's mobile, 11 digits: the event joins his orders
]
LEADS = [("L1", "", "+8613800138000"), ("L2", "bob@example.com", "86 139 0013 9000")]


def test_every_spelling_of_a_mobile_resolves_to_one_customer(data_dir) -> None:
    raw = data_dir / "raw"
    raw.mkdir()
    pd.DataFrame(CONTACTS, columns=["contact_id", "phone", "email"]).to_csv(raw / "contacts.csv", index=False)
    orders = pd.DataFrame(ORDERS, columns=["order_id", "customer_ref"])
    orders["order_ts"], orders["amount"] = "2024-03-01T00:00:00Z", 10.0
    orders.to_csv(raw / "orders.csv", index=False)
    events = pd.DataFrame(EVENTS, columns=["event_id", "user_ref"])
    events["event_type"], events["event_ts"] = "visit", "2024-03-02T00:00:00Z"
    events.to_csv(raw / "events.csv", index=False)
    leads = pd.DataFrame(LEADS, columns=["lead_id", "email", "phone"])
    leads["created_at"] = "2024-01-01T00:00:00Z"
    leads.to_csv(raw / "leads.csv", index=False)
    settings = load_settings(
        data_dir=str(data_dir),
        sources={
            "as_of": "2024-06-01T00:00:00Z",
            "contacts": {
                "path": "{data_dir}/raw/contacts.csv",
                "url": None,
                "table": None,
                "columns": {"contact_id": "contact_id", "phone": "phone", "email": "email"},
            },
            "orders": {
                "path": "{data_dir}/raw/orders.csv",
                "columns": {k: k for k in ("order_id", "customer_ref", "order_ts", "amount")},
            },
            "events": {
                "path": "{data_dir}/raw/events.csv",
                "columns": {k: k for k in ("event_id", "user_ref", "event_type", "event_ts")},
            },
            "leads": {
                "path": "{data_dir}/raw/leads.csv",
                "columns": {k: k for k in ("lead_id", "email", "phone", "created_at")},
            },
        },
    )
    result = run_ingest(settings)
    assert sum(rep.quarantined for rep in result.sources.values()) == 0
    idmap = load_clean(settings, "identity_map").set_index(["source", "source_record_id"])["customer_id"]
    ann = {idmap[("contacts", "C1")]}
    ann |= {idmap[("orders", o)] for o in ("O1", "O2", "O3", "O4", "O5", "O6")}
    ann |= {idmap[("events", e)] for e in ("E1", "E2")} | {idmap[("leads", "L1")]}
    bob = {idmap[("contacts", "C2")], idmap[("orders", "O7")], idmap[("orders", "O8")]}
    bob |= {idmap[("events", "E3")], idmap[("leads", "L2")]}
    assert len(ann) == 1 and len(bob) == 1 and ann != bob
    assert len(load_clean(settings, "customers")) == 2

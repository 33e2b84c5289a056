"""`persona ingest` on a tiny hand-built set of sources: every quarantine rule, duplicates, identity,
consent, the clean tables' shape and that no raw PII reaches them."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from features.ingest import load_clean, run_ingest, withdrawn_customer_ids

AS_OF = "2025-01-01T00:00:00Z"

CONTACTS = [
    # contact_id, full_name, phone, email, region, city, signup_date, channel, type, consent, last_updated
    (
        "C1",
        "Ann Lee",
        "+86 138-0013-8000",
        " Ann@Example.com ",
        "east",
        "Shanghai",
        "2024-01-05T10:00:00+08:00",
        "web",
        "retail",
        "Y",
        "2024-06-01",
    ),
    (
        "C2",
        "Ann Lee",
        "13800138000",
        "ann.alt@example.com",
        "north",
        "Beijing",
        "2024-01-02",
        "store",
        "retail",
        "N",
        "2024-03-01",
    ),
    (
        "C3",
        "Bob Wu",
        "0086 13900139000",
        "bob@example.com",
        None,
        "Nanjing",
        "2024-02-01 00:00:00",
        "ads",
        "business",
        None,
        "2024-02-01",
    ),
    (
        "C4",
        "Cy Ma",
        None,
        "cy@example.com",
        "west",
        "Chengdu",
        "2024-03-01T00:00:00Z",
        "web",
        "retail",
        "yes",
        None,
    ),
    ("C5", "Bad Date", None, "bad@example.com", "west", "Chengdu", "2024-13-45", "web", "retail", "Y", None),
    (
        "C6",
        "Odd Consent",
        None,
        "odd@example.com",
        "west",
        "Chengdu",
        "2024-01-01",
        "web",
        "retail",
        "maybe",
        None,
    ),
]
ORDER_HEADER = "order_id,customer_ref,order_ts,amount,discount,quantity,category,status"
ORDERS = [
    "O1,ann@example.com,2024-02-01T12:00:00Z,100,10,2,books,completed",  # row 1
    "O2,+8613800138000,2024-03-01T08:00:00+08:00,50,0,1,toys,returned",  # row 2
    "O3,13900139000,2024-03-05 10:00:00,30,0,1,books,cancelled",  # row 3
    "O3,13900139000,2024-03-05 10:00:00,30,0,1,books,cancelled",  # row 4: exact duplicate
    "O5,bob@example.com,2024-04-01,-5,0,1,books,completed",  # row 5: amount_negative
    "O6,bob@example.com,not a date,20,0,1,books,completed",  # row 6: timestamp_unparseable
    "O7,bob@example.com,2030-01-01T00:00:00Z,20,0,1,books,completed",  # row 7: timestamp_in_future
    "O8,bob@example.com,2024-04-02,20,0,0,books,completed",  # row 8: quantity_not_positive
    "O9,garbage,2024-04-03,20,0,1,books,completed",  # row 9: invalid_customer_ref
    ",bob@example.com,2024-04-04,20,0,1,books,completed",  # row 10: required
    "O11,bob@example.com,2024-04-05,100,200,1,books,completed",  # row 11: discount_exceeds_amount
    "O12,bob@example.com,2024-04-06,20,0,1,books,lost",  # row 12: unknown_status
    "O1,ann@example.com,2024-02-02T12:00:00Z,999,0,1,books,completed",  # row 13: duplicate_id
    "O14,Dave@Example.com,2024-05-01T00:00:00Z,40,5,3,garden,",  # row 14: a person seen only here
    "O15,bob@example.com,2024-04-07,abc,0,1,books,completed",  # row 15: number_unparseable
]
EVENT_HEADER = "event_id,user_ref,event_type,event_ts,channel"
EVENTS = [
    "E1,C3,visit,2024-01-20T09:00:00+08:00,web",  # Bob by contact id
    "E2,ANN@example.com,email_open,2024-01-01T00:00:00Z,email",  # Ann by email
    "E3,bob@example.com,teleport,2024-02-01T00:00:00Z,web",  # row 3: unknown_event_type
    "E4,+86 139 0013 9000,Complaint,2024-06-01T00:00:00Z,support",  # Bob by phone; type case-folded
]
LEAD_HEADER = "lead_id,email,phone,source,campaign,created_at,engagement_score,converted,converted_at"
LEADS = [
    "L1,eve@example.com,,webinar,spring,2023-12-01T00:00:00Z,55,0,",  # Eve: only a lead
    "L2,bob@example.com,,search,spring,2023-11-15T00:00:00Z,80,1,2024-02-01T00:00:00Z",
    "L3,fay@example.com,,search,spring,2024-01-01T00:00:00Z,150,0,",  # row 3: engagement_out_of_range
    "L4,not-an-email,12,search,spring,2024-01-01T00:00:00Z,10,0,",  # row 4: no_contact_key
    "L5,gus@example.com,,search,spring,2024-01-01T00:00:00Z,10,1,",  # row 5: converted_without_timestamp
]


def write_sources(raw: Path) -> None:
    """The four raw sources in the generator's formats (CRM in SQLite, gzipped CSVs, a plain CSV)."""
    raw.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(raw / "crm.sqlite") as conn:
        conn.execute(
            "CREATE TABLE contacts (contact_id TEXT, full_name TEXT, phone TEXT, email TEXT, region TEXT, "
            "city TEXT, signup_date TEXT, acquisition_channel TEXT, customer_type TEXT, "
            "consent_profiling TEXT, last_updated TEXT)"
        )
        conn.executemany("INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?,?,?,?)", CONTACTS)
    with gzip.open(raw / "orders.csv.gz", "wt") as f:
        f.write("\n".join([ORDER_HEADER, *ORDERS]) + "\n")
    with gzip.open(raw / "events.csv.gz", "wt") as f:
        f.write("\n".join([EVENT_HEADER, *EVENTS]) + "\n")
    (raw / "leads.csv").write_text("\n".join([LEAD_HEADER, *LEADS]) + "\n")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from configs.settings import load_settings

    settings = load_settings(data_dir=str(tmp_path_factory.mktemp("ingest") / "data"))
    write_sources(settings.data_dir / "raw")
    result = run_ingest(settings, as_of=AS_OF)
    return settings, result


def quarantined(settings, source: str) -> set[tuple[int, str, str]]:
    q = load_clean(settings, "quarantine")
    q = q[q["source"] == source]
    return set(zip(q["row"], q["column"], q["rule"], strict=True))


def test_every_order_rule_lands_in_quarantine_with_row_column_rule(ingested) -> None:
    settings, _ = ingested
    assert quarantined(settings, "orders") == {
        (5, "amount", "amount_negative"),
        (6, "order_ts", "timestamp_unparseable"),
        (7, "order_ts", "timestamp_in_future"),
        (8, "quantity", "quantity_not_positive"),
        (9, "customer_ref", "invalid_customer_ref"),
        (10, "order_id", "required"),
        (11, "discount", "discount_exceeds_amount"),
        (12, "status", "unknown_status"),
        (13, "order_id", "duplicate_id"),
        (15, "amount", "number_unparseable"),
    }


def test_other_sources_rules(ingested) -> None:
    settings, _ = ingested
    assert quarantined(settings, "events") == {(3, "event_type", "unknown_event_type")}
    assert quarantined(settings, "leads") == {
        (3, "engagement_score", "engagement_out_of_range"),
        (4, "email", "no_contact_key"),
        (5, "converted_at", "converted_without_timestamp"),
    }
    assert quarantined(settings, "contacts") == {
        (5, "signup_date", "timestamp_unparseable"),
        (6, "consent_profiling", "unknown_consent_value"),
    }


def test_quarantine_keeps_offending_values_but_redacts_pii(ingested) -> None:
    settings, _ = ingested
    q = load_clean(settings, "quarantine").set_index(["source", "row", "column"])["value"]
    assert q[("orders", 5, "amount")] == "-5"
    assert q[("orders", 6, "order_ts")] == "not a date"
    assert q[("orders", 12, "status")] == "lost"
    assert q[("orders", 9, "customer_ref")] == "<redacted>"
    assert q[("leads", 4, "email")] == "<redacted>"


def test_counts_per_source_and_report_file(ingested) -> None:
    settings, result = ingested
    orders = result.sources["orders"]
    assert (orders.read, orders.duplicates_removed, orders.quarantined, orders.kept) == (15, 1, 10, 4)
    report = json.loads((settings.data_dir / "clean" / "ingest_report.json").read_text())
    assert {
        k: report["sources"]["events"][k] for k in ("read", "kept", "quarantined", "duplicates_removed")
    } == {
        "read": 4,
        "kept": 3,
        "quarantined": 1,
        "duplicates_removed": 0,
    }
    assert {k: report["sources"]["leads"][k] for k in ("read", "kept", "quarantined")} == {
        "read": 5,
        "kept": 2,
        "quarantined": 3,
    }
    assert report["absent"] == []
    assert report["as_of"].startswith("2025-01-01T00:00:00")


def test_identity_one_customer_per_person_with_rules(ingested) -> None:
    settings, _ = ingested
    idmap = load_clean(settings, "identity_map")
    person = dict(
        zip(zip(idmap["source"], idmap["source_record_id"], strict=True), idmap["customer_id"], strict=True)
    )
    ann = {
        person[("contacts", "C1")],
        person[("contacts", "C2")],
        person[("orders", "O1")],
        person[("orders", "O2")],
        person[("events", "E2")],
    }
    bob = {
        person[("contacts", "C3")],
        person[("orders", "O3")],
        person[("events", "E1")],
        person[("events", "E4")],
        person[("leads", "L2")],
    }
    assert len(ann) == 1 and len(bob) == 1 and ann != bob
    others = {person[("contacts", "C4")], person[("orders", "O14")], person[("leads", "L1")]}
    assert len(others | ann | bob) == 5
    assert all(re.fullmatch(r"P[0-9a-f]{12}", c) for c in idmap["customer_id"])
    rule = dict(
        zip(zip(idmap["source"], idmap["source_record_id"], strict=True), idmap["match_rule"], strict=True)
    )
    # C1 is Ann's anchor; C2 shares her phone; O1 her email; E1 reaches Bob by contact id.
    assert rule[("contacts", "C1")] == "new"
    assert rule[("contacts", "C2")] == "phone_e164"
    assert rule[("orders", "O1")] == "email_exact"
    assert rule[("events", "E1")] == "contact_id"
    assert rule[("orders", "O14")] == "new"


def test_identity_map_keeps_the_business_keys_but_no_email_or_phone(ingested) -> None:
    settings, _ = ingested
    idmap = load_clean(settings, "identity_map")
    key = dict(
        zip(zip(idmap["source"], idmap["source_record_id"], strict=True), idmap["source_key"], strict=True)
    )
    assert key[("contacts", "C1")] == "C1" and key[("leads", "L2")] == "L2"
    assert key[("events", "E1")] == "C3"  # the event named Bob by his CRM contact id
    # orders and events that named a person by email or phone carry no key: those are personal data
    assert pd.isna(key[("orders", "O1")]) and pd.isna(key[("orders", "O2")]) and pd.isna(key[("events", "E4")])


def test_customer_ids_are_stable_across_runs(ingested) -> None:
    settings, _ = ingested
    first = load_clean(settings, "identity_map")
    run_ingest(settings, as_of=AS_OF)
    again = load_clean(settings, "identity_map")
    pd.testing.assert_frame_equal(first, again)


def test_consent_is_carried_and_withdrawn_ids_listed(ingested) -> None:
    settings, _ = ingested
    idmap = load_clean(settings, "identity_map").set_index(["source", "source_record_id"])["customer_id"]
    ann, bob, cy = idmap[("contacts", "C2")], idmap[("contacts", "C3")], idmap[("contacts", "C4")]
    customers = load_clean(settings, "customers").set_index("customer_id")
    # C2 (one of Ann's two contacts) said N: Ann withdrew. Bob was never asked (NULL): allowed.
    assert not customers.at[ann, "consent_profiling"]
    assert customers.at[bob, "consent_profiling"] and customers.at[cy, "consent_profiling"]
    assert withdrawn_customer_ids(settings) == {ann}


def test_customers_profile_first_seen_and_sources(ingested) -> None:
    settings, _ = ingested
    idmap = load_clean(settings, "identity_map").set_index(["source", "source_record_id"])["customer_id"]
    customers = load_clean(settings, "customers").set_index("customer_id")
    ann, bob, eve = idmap[("contacts", "C1")], idmap[("contacts", "C3")], idmap[("leads", "L1")]
    dave = idmap[("orders", "O14")]
    # Ann's latest contact (C1, updated 2024-06-01) gives the profile; signup is her earliest (C2).
    assert customers.at[ann, "region"] == "east" and customers.at[ann, "city"] == "Shanghai"
    assert customers.at[ann, "signup_ts"] == pd.Timestamp("2024-01-02", tz="UTC")
    # Ann's email_open event (2024-01-01) is earlier than her signup.
    assert customers.at[ann, "first_seen_ts"] == pd.Timestamp("2024-01-01", tz="UTC")
    # Bob: lead created 2023-11-15 is his first trace.
    assert customers.at[bob, "first_seen_ts"] == pd.Timestamp("2023-11-15", tz="UTC")
    assert list(customers.at[bob, "sources"]) == ["contacts", "events", "leads", "orders"]
    assert list(customers.at[eve, "sources"]) == ["leads"]
    assert customers.at[bob, "is_customer"] and not customers.at[eve, "is_customer"]
    assert customers.at[dave, "is_customer"] and pd.isna(customers.at[dave, "region"])
    assert str(customers["signup_ts"].dtype) == "datetime64[us, UTC]"


def test_clean_orders_events_leads_values(ingested) -> None:
    settings, _ = ingested
    orders = load_clean(settings, "orders").set_index("order_id")
    assert sorted(orders.index) == ["O1", "O14", "O2", "O3"]
    assert orders.at["O1", "amount"] == 90.0 and orders.at["O1", "discount"] == 10.0
    assert orders.at["O1", "quantity"] == 2
    assert orders.at["O2", "is_returned"] and not orders.at["O2", "is_cancelled"]
    assert orders.at["O3", "is_cancelled"] and orders.at["O3", "amount"] == 30.0
    assert orders.at["O14", "amount"] == 35.0  # empty status = completed
    # 2024-03-01T08:00:00+08:00 is midnight UTC; naive text is UTC.
    assert orders.at["O2", "order_ts"] == pd.Timestamp("2024-03-01", tz="UTC")
    assert orders.at["O3", "order_ts"] == pd.Timestamp("2024-03-05 10:00", tz="UTC")
    for table in ("orders", "events", "leads", "customers"):
        frame = load_clean(settings, table)
        for column in frame.columns:
            if "ts" in column:
                assert str(frame[column].dtype) == "datetime64[us, UTC]", (table, column)
    events = load_clean(settings, "events")
    assert list(events.columns) == ["customer_id", "event_ts", "event_type", "channel"]
    assert sorted(events["event_type"]) == ["complaint", "email_open", "visit"]
    leads = load_clean(settings, "leads").set_index("lead_id")
    assert pd.isna(leads.at["L1", "converted_ts"])
    assert leads.at["L2", "converted_ts"] == pd.Timestamp("2024-02-01", tz="UTC")
    assert leads.at["L2", "engagement_score"] == 80.0


def test_no_raw_pii_in_any_clean_table(ingested) -> None:
    settings, _ = ingested
    phone_like = re.compile(r"\d{11,}")  # the fixture's phones have 11 digits (dates have 8)
    names = {c[1] for c in CONTACTS}
    for path in sorted((settings.data_dir / "clean").glob("*.parquet")):
        frame = pd.read_parquet(path)
        assert not {"email", "phone", "full_name", "customer_ref", "user_ref"} & set(frame.columns), path.name
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]) or pd.api.types.is_numeric_dtype(
                frame[column]
            ):
                continue  # timestamps and numbers hold digit runs by nature; PII arrives as text
            if column == "customer_id":  # a salted hash: hex digits may run long, the format says enough
                assert frame[column].str.fullmatch(r"P[0-9a-f]{12}").all(), path.name
                continue
            for value in frame[column].explode().dropna().astype(str):
                assert "@" not in value, (path.name, column, value)
                assert not phone_like.search(re.sub(r"[\s\-().+]", "", value)), (path.name, column, value)
                assert value not in names, (path.name, column, value)

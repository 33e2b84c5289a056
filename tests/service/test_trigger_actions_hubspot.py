"""Trigger actions beyond webhooks, against the HubSpot-contract fake: a CRM task and a note on the
customer's contact (CRM v3 objects + associations) and a list membership (Lists v3), through the trigger
outbox with its guarantees: a 429 waited out, a 500 retried, a lost acknowledgement not creating a second
task, a refused input dead-lettered and replayed, a customer without a CRM key parked until it has one."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd

from configs.sections.triggers import TriggerRule
from serving.changes import TagChange
from serving.connectors.activities import HubSpotActivitiesConnector, marker
from serving.connectors.hubspot_lists import HubSpotListsConnector
from serving.dispatcher import Dispatcher
from serving.outbox import make_state_engine
from serving.triggers import TriggerConnector, fire, render, trigger_outbox
from tests.fakes.hubspot import FakeHubSpot

AT = datetime(2026, 1, 8, 2, 0, tzinfo=UTC)
ID_PROPERTY = "persona_contact_id"
RULE = TriggerRule(
    name="churn_alert",
    tag="churn_risk",
    becomes="high",
    crm_task={"subject": "Call {customer_id}: churn risk {new_value}", "priority": "HIGH", "due_in_days": 2},
    crm_note={"body": "{tag} went from {old_value} to {new_value}"},
    add_to_list={"name": "Churn alert"},
)


class Keys:
    """Customer X's CRM record key is "CX"; customers in `keyless` have none (email-only)."""

    record_key = "orders"

    def __init__(self) -> None:
        self.keyless = {"Z"}

    def records_for(self, ids):  # type: ignore[no-untyped-def]
        return {i: [] if i in self.keyless else [f"C{i}"] for i in ids}


def change(customer: str) -> TagChange:
    return TagChange(
        customer_id=customer, tag="churn_risk", crm_field="persona_churn_risk", old_value="medium",
        new_value="high", changed_at=AT, produced_by="model:persona-churn@3", inputs={"churn_probability": 0.8},
    )  # fmt: skip


def make_contacts(crm: FakeHubSpot, names: str) -> dict[str, str]:
    inputs = [{"idProperty": ID_PROPERTY, "id": f"C{c}", "properties": {"firstname": c}} for c in names]
    created = httpx.post(
        f"{crm.url}/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": inputs},
        headers={"Authorization": "Bearer t"},
    )
    assert created.status_code == 200
    return {c: str(crm.record_id(f"C{c}")) for c in names}


def test_tasks_notes_and_lists_through_the_trigger_outbox(tmp_path: Path) -> None:
    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    outbox = trigger_outbox(engine)
    keys = Keys()
    with FakeHubSpot(token="t") as crm:
        record = make_contacts(crm, "AB")
        http = {"token": "t", "id_property": ID_PROPERTY, "resolver": keys, "timeout": 0.5}

        def dispatcher() -> Dispatcher:
            connector = TriggerConnector(
                [RULE],
                {
                    "crm_task": HubSpotActivitiesConnector(crm.url, render=lambda e: render(RULE, e), **http),
                    "crm_note": HubSpotActivitiesConnector(crm.url, render=lambda e: render(RULE, e), **http),
                    "add_to_list": HubSpotListsConnector(crm.url, **http),
                },
            )
            clock = [time.time()]
            return Dispatcher(
                outbox, connector, base_delay=0.01, max_delay=0.05,
                clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s),
            )  # fmt: skip

        firings = fire([RULE], [change("A"), change("B"), change("Z")], None)
        assert sorted({f.crm_field for f in firings}) == ["add_to_list", "crm_note", "crm_task"]
        with engine.begin() as conn:
            assert outbox.enqueue(conn, firings) == 9
            assert outbox.enqueue(conn, firings) == 0  # the same change again: nothing fires twice
        # the first request waits out a 429, the next gets a 500, and the task batch is applied but its
        # acknowledgement lost (the client times out): retried, found by its change id, not created again
        crm.set_faults(rate_limit_next=1, retry_after="1", fail_requests=frozenset({3}))
        crm.set_faults(lost_ack_next=1, lost_ack_delay=1.0)
        stats = dispatcher().run_until_empty(deadline=time.time() + 120)
        assert stats.rate_limited >= 1 and stats.retried >= 1
        assert stats.duplicates >= 1  # the task batch whose answer was lost: found, not re-created
        assert stats.dead == 0 and stats.unmatched == 3  # Z has no CRM key: parked, not dead
        tasks, notes = crm.activities("tasks"), crm.activities("notes")
        assert sorted(t["contacts"][0] for t in tasks) == sorted([record["A"], record["B"]])
        assert sorted(n["contacts"][0] for n in notes) == sorted([record["A"], record["B"]])
        task = next(t for t in tasks if t["contacts"] == [record["A"]])["properties"]
        assert task["hs_task_subject"] == "Call A: churn risk high" and task["hs_task_priority"] == "HIGH"
        assert task["hs_timestamp"] == "2026-01-10T02:00:00.000Z" and task["hs_task_status"] == "NOT_STARTED"
        assert notes[0]["properties"]["hs_note_body"].startswith("churn_risk went from medium to high")
        assert crm.members("Churn alert") == {record["A"], record["B"]}
        counts = outbox.counts()
        assert counts["delivered"] == 6 and counts["unmatched"] == 3 and counts["dead"] == 0

        # Z's contact appears in the CRM and a later ingest gives Z a key: released, delivered once
        record |= make_contacts(crm, "Z")
        keys.keyless.clear()
        crm.set_faults(reject=lambda item: "INVALID_ENUMERATION_OPTION" if "Call Z" in str(item) else None)
        stats = dispatcher().run_until_empty(deadline=time.time() + 60)
        assert stats.released == 3 and stats.delivered == 2 and stats.dead == 1  # Z's task refused
        dead = outbox.dead_letters()
        assert (
            len(dead) == 1 and dead[0].customer_id == "Z" and "INVALID_ENUMERATION_OPTION" in dead[0].reason
        )
        crm.set_faults(reject=None)
        assert outbox.replay(now=time.time()) == 1
        dispatcher().run_until_empty(deadline=time.time() + 60)
        tasks = crm.activities("tasks")
        assert len(tasks) == 3 and len(crm.activities("notes")) == 3
        assert crm.members("Churn alert") == {record["A"], record["B"], record["Z"]}
        # every firing made exactly one task: one marker per change id, none twice
        with engine.connect() as conn:
            ids = pd.read_sql("select change_id from trigger_outbox where crm_field = 'crm_task'", conn)[
                "change_id"
            ]
        bodies = [t["properties"]["hs_task_body"] for t in tasks]
        assert sorted(sum(marker(i) in b for b in bodies) for i in ids) == [1, 1, 1]
        assert outbox.counts() | {"superseded": 0} == {
            "pending": 0, "delivered": 9, "dead": 0, "superseded": 0, "unmatched": 0
        }  # fmt: skip


def test_tasks_notes_and_lists_in_the_sql_crm(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from serving.connectors.activities import SqlActivitiesConnector, activities_table
    from serving.outbox import OutboxEntry
    from serving.segments import SqlListsConnector, list_members

    crm = sa.create_engine(f"sqlite:///{tmp_path}/crm.sqlite")
    keys = Keys()
    activities = SqlActivitiesConnector(crm, resolver=keys, render=lambda e: render(RULE, e))
    connector = TriggerConnector(
        [RULE],
        {
            "crm_task": activities,
            "crm_note": activities,
            "add_to_list": SqlListsConnector(crm, resolver=keys),
        },
    )
    firings = fire([RULE], [change("A"), change("Z")], None)
    entries = [
        OutboxEntry(id=i + 1, change=replace(f, change_id=f"c{i}", seq=1), attempts=0)
        for i, f in enumerate(firings)
    ]
    for _ in range(2):  # a re-delivery of every request changes nothing
        results = [connector.send(group) for group in connector.split(entries)]
        assert sum(len(r.unmatched) for r in results) == 3 and not any(r.rejected for r in results)
    with crm.connect() as conn:
        rows = conn.execute(
            sa.select(activities_table.c.kind, activities_table.c.contact_id, activities_table.c.subject)
        ).all()
        members = conn.execute(
            sa.select(list_members.c.list_name, list_members.c.contact_id, list_members.c.member)
        ).all()
    assert sorted(rows) == [("note", "CA", None), ("task", "CA", "Call A: churn risk high")]
    assert members == [("Churn alert", "CA", True)]

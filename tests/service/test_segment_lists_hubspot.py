"""Segment lists to a HubSpot-style CRM: the lists contract of the fake (Lists API v3), memberships kept
in step through the segment outbox (adds, removes, a flip back), a 429 waited out, an unknown contact
dead-lettered."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd

from configs.sections.segments import SegmentRule
from serving.connectors.hubspot_lists import HubSpotListsConnector
from serving.dispatcher import Dispatcher
from serving.outbox import make_state_engine
from serving.segments import segment_outbox, sync_segments
from serving.tag_store import TagStore
from tests.fakes.hubspot import FakeHubSpot

AT = datetime(2026, 1, 8, 2, 0, tzinfo=UTC)
ID_PROPERTY = "persona_contact_id"


class Keys:
    """Customer X's CRM record is contact "CX"; customer Z has none in HubSpot."""

    record_key = "orders"

    def records_for(self, ids):  # type: ignore[no-untyped-def]
        return {i: [f"C{i}"] for i in ids}


def test_lists_follow_the_tags_in_hubspot(tmp_path: Path) -> None:
    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    store = TagStore(engine, crm_fields={"persona_name": "persona_persona"})
    store.create_schema()
    rule = SegmentRule(name="loyal", where={"persona_name": "high_value_loyal"}, list_name="Loyal customers")

    def tag(rows: dict[str, str]) -> None:
        frame = pd.DataFrame({"customer_id": list(rows), "persona_name": list(rows.values())})
        with engine.begin() as conn:
            store.apply(conn, tags=frame, produced_by={"persona_name": "model:s@1"}, at=AT)

    with FakeHubSpot(token="t") as crm:
        # the CRM's contacts (created through the documented batch upsert)
        inputs = [{"idProperty": ID_PROPERTY, "id": f"C{c}", "properties": {"firstname": c}} for c in "ABCD"]
        created = httpx.post(
            f"{crm.url}/crm/v3/objects/contacts/batch/upsert",
            json={"inputs": inputs},
            headers={"Authorization": "Bearer t"},
        )
        assert created.status_code == 200
        record = {c: crm.record_id(f"C{c}") for c in "ABCD"}

        def deliver() -> tuple[set[str], int]:
            connector = HubSpotListsConnector(crm.url, token="t", id_property=ID_PROPERTY, resolver=Keys())
            clock = [time.time()]
            dispatcher = Dispatcher(
                segment_outbox(engine), connector, base_delay=0.01, max_delay=0.05,
                clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s),
            )  # fmt: skip
            stats = dispatcher.run_until_empty(deadline=clock[0] + 120)
            connector.close()
            return crm.members("Loyal customers"), stats.dead

        tag({"A": "high_value_loyal", "B": "high_value_loyal", "C": "new", "Z": "high_value_loyal"})
        synced = sync_segments(engine, [rule], at=AT)["loyal"]
        assert (synced.members, synced.added) == (3, 3)
        crm.set_faults(rate_limit_next=1, retry_after="1")  # the first request is told to wait
        members, dead = deliver()
        assert members == {record["A"], record["B"]} and dead == 1  # Z has no HubSpot contact
        # B leaves, C joins, A stays
        tag({"A": "high_value_loyal", "B": "at_risk", "C": "high_value_loyal", "Z": "high_value_loyal"})
        synced = sync_segments(engine, [rule], at=AT)["loyal"]
        assert (synced.added, synced.removed) == (1, 1)
        assert deliver() == ({record["A"], record["C"]}, 0)
        # B comes back: the newest change wins
        tag(
            {
                "A": "high_value_loyal",
                "B": "high_value_loyal",
                "C": "high_value_loyal",
                "Z": "high_value_loyal",
            }
        )
        sync_segments(engine, [rule], at=AT)
        assert deliver() == ({record["A"], record["B"], record["C"]}, 0)
        # nothing changed: nothing queued, nothing sent, the list as it was
        assert sync_segments(engine, [rule], at=AT)["loyal"].added == 0
        assert deliver()[0] == {record["A"], record["B"], record["C"]}

"""The http connector against a local HubSpot CRM v3 double: contract, faults, exactly-once effect."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.errors import CrmError
from serving.changes import TagChange
from serving.connectors import make_connector
from serving.connectors.http import HttpConnector
from serving.dispatcher import Dispatcher
from serving.outbox import Outbox, make_state_engine
from serving.record_keys import RecordKeys
from tests.fakes.hubspot import FakeHubSpot

TOKEN = "test-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def change(customer: str, value: str, *, tag: str = "churn_risk") -> TagChange:
    return TagChange(
        customer_id=customer,
        tag=tag,
        crm_field=f"persona_{tag}",
        old_value=None,
        new_value=value,
        changed_at=datetime(2026, 1, 5, tzinfo=UTC),
        produced_by="model:persona-churn@3",
    )


@pytest.fixture
def hubspot():
    with FakeHubSpot(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(make_state_engine(f"sqlite:///{tmp_path}/persona.sqlite"))
    box.create_schema()
    return box


def connector(fake: FakeHubSpot, *, timeout: float = 5.0, identity_map: Path | None = None) -> HttpConnector:
    return HttpConnector(
        fake.url,
        token=TOKEN,
        id_property="persona_customer_id",
        resolver=RecordKeys(identity_map),
        timeout=timeout,
    )


def dispatcher(box: Outbox, conn: HttpConnector, clock: FakeClock, **kw: float) -> Dispatcher:
    return Dispatcher(
        box,
        conn,
        batch_size=int(kw.get("batch_size", 100)),
        give_up_after=float(kw.get("give_up_after", 86400.0)),
        base_delay=0.5,
        max_delay=30.0,
        lease_seconds=60.0,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(3),
    )


def enqueue(box: Outbox, changes: list[TagChange]) -> None:
    with box.engine.begin() as conn:
        box.enqueue(conn, changes, now=1_000.0)


def test_upserts_properties_by_id_property_with_bearer_token(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high"), change("P1", "loyal", tag="segment"), change("P2", "low")])
    stats = dispatcher(outbox, connector(hubspot), FakeClock()).run_until_empty()
    assert stats.delivered == 3 and stats.requests == 1
    # two tags of one customer travel as one input (HubSpot refuses duplicate ids in a batch)
    assert hubspot.state.received == Counter({"P1": 1, "P2": 1})
    assert hubspot.property_of("P1", "persona_churn_risk") == "high"
    assert hubspot.property_of("P1", "persona_segment") == "loyal"
    assert hubspot.property_of("P1", "persona_customer_id") == "P1"
    assert hubspot.property_of("P2", "persona_churn_risk") == "low"


def test_wrong_token_settles_nothing(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high")])
    bad = HttpConnector(
        hubspot.url, token="wrong", id_property="persona_customer_id", resolver=RecordKeys(None)
    )
    with pytest.raises(CrmError, match=r"refused the credentials \(401\)") as err:
        dispatcher(outbox, bad, FakeClock()).run_once()
    assert "wrong" not in str(err.value)  # the token never shows up in messages
    assert outbox.counts() == {"pending": 1, "delivered": 0, "dead": 0, "superseded": 0, "unmatched": 0}
    (entry,), _ = outbox.claim(limit=1, now=1_000.0, lease_seconds=1)
    assert entry.attempts == 0


def test_wrong_url_is_a_configuration_error_not_a_dead_letter(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high"), change("P2", "low")])
    lost = HttpConnector(
        hubspot.url + "/v2", token=TOKEN, id_property="persona_customer_id", resolver=RecordKeys(None)
    )
    with pytest.raises(CrmError, match="answered 404") as err:
        dispatcher(outbox, lost, FakeClock()).run_until_empty()
    assert "crm.url" in str(err.value)
    assert outbox.counts() == {"pending": 2, "delivered": 0, "dead": 0, "superseded": 0, "unmatched": 0}


def test_400_for_one_record_is_isolated_then_replayed(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    hubspot.set_faults(
        reject=lambda item: "INVALID_OPTION: 'bad' is not a valid option" if item["id"] == "P0037" else None
    )
    enqueue(outbox, [change(f"P{i:04d}", "high") for i in range(100)])
    clock = FakeClock()
    stats = dispatcher(outbox, connector(hubspot), clock).run_until_empty()
    assert stats.delivered == 99 and stats.dead == 1
    assert len(hubspot.applied) == 99 and hubspot.property_of("P0037", "persona_churn_risk") is None
    (dead,) = outbox.dead_letters()
    assert (
        dead.customer_id == "P0037" and "VALIDATION_ERROR" in dead.reason and "INVALID_OPTION" in dead.reason
    )
    hubspot.set_faults(reject=None)
    assert outbox.replay(now=clock()) == 1
    dispatcher(outbox, connector(hubspot), clock).run_until_empty()
    assert hubspot.property_of("P0037", "persona_churn_risk") == "high"
    assert len(hubspot.applied) == 100


def test_207_multi_status_dead_letters_only_the_failed_input(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    hubspot.set_faults(multi_status=True, reject=lambda item: "bad value" if item["id"] == "P3" else None)
    enqueue(outbox, [change(f"P{i}", "high") for i in range(6)])
    stats = dispatcher(outbox, connector(hubspot), FakeClock()).run_until_empty()
    assert stats.requests == 1 and stats.delivered == 5 and stats.dead == 1
    assert hubspot.state.statuses[207] == 1
    (dead,) = outbox.dead_letters()
    assert dead.customer_id == "P3" and dead.reason == "CRM rejected the record: VALIDATION_ERROR: bad value"


def test_429_retry_after_and_rate_limit_headers(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    enqueue(outbox, [change("P1", "high")])
    clock = FakeClock()
    hubspot.set_faults(rate_limit_next=1, retry_after="2")
    dispatcher(outbox, connector(hubspot), clock).run_until_empty()
    assert clock.sleeps == [2.0]
    # without Retry-After: HubSpot's X-HubSpot-RateLimit-Interval-Milliseconds sets the pause
    enqueue(outbox, [change("P2", "high")])
    hubspot.set_faults(rate_limit_next=1, retry_after=None, rate_limit_interval_ms=1500)
    clock.sleeps.clear()
    stats = dispatcher(outbox, connector(hubspot), clock).run_until_empty()
    assert clock.sleeps == [1.5] and stats.delivered == 1 and stats.rate_limited == 1


def test_customers_map_to_their_crm_contacts(hubspot: FakeHubSpot, outbox: Outbox, tmp_path: Path) -> None:
    identity = tmp_path / "identity_map.parquet"
    pd.DataFrame(
        {
            "source": ["contacts", "contacts", "contacts", "orders", "orders"],
            "source_record_id": ["C0000001", "C0000007", "C0000002", "O9", "O10"],
            "source_key": ["C0000001", "C0000007", "C0000002", None, "K-77"],
            "customer_id": ["P1", "P1", "P2", "P3", "P4"],
            "match_rule": ["contact_id", "email_exact", "contact_id", "new", "new"],
        }
    ).to_parquet(identity)
    enqueue(outbox, [change("P1", "high"), change("P2", "low"), change("P3", "low"), change("P4", "low")])
    stats = dispatcher(outbox, connector(hubspot, identity_map=identity), FakeClock()).run_until_empty()
    # both CRM records of P1 get the tag; P4 is addressed by its orders' customer number; P3 has no
    # key the CRM knows: parked as unmatched (not a dead letter), never sent under an empty id
    assert stats.delivered == 3 and stats.dead == 0 and stats.unmatched == 1
    assert sorted(hubspot.state.contacts) == ["C0000001", "C0000002", "C0000007", "K-77"]
    assert outbox.counts()["unmatched"] == 1 and outbox.dead_letters() == []
    assert hubspot.property_of("C0000007", "persona_churn_risk") == "high"
    # a newer change of P3 while it waits supersedes the parked one: one entry per tag waits
    enqueue(outbox, [change("P3", "high")])
    again = dispatcher(outbox, connector(hubspot, identity_map=identity), FakeClock()).run_until_empty()
    assert again.unmatched == 1 and again.released == 0
    assert outbox.counts()["unmatched"] == 1 and outbox.counts()["superseded"] == 1
    # a later ingest gives P3 an orders key: its parked change is released and delivered, once
    frame = pd.read_parquet(identity)
    frame.loc[frame["customer_id"] == "P3", "source_key"] = "K-3"
    frame.to_parquet(identity)
    os.utime(identity, (time.time() + 5, time.time() + 5))
    later = dispatcher(outbox, connector(hubspot, identity_map=identity), FakeClock()).run_until_empty()
    assert later.released == 1 and later.delivered == 1 and later.unmatched == 0
    assert hubspot.property_of("K-3", "persona_churn_risk") == "high"
    assert outbox.counts()["unmatched"] == 0 and outbox.counts()["dead"] == 0


def test_make_connector_reads_url_and_token_from_settings(
    hubspot: FakeHubSpot, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    from configs.settings import load_settings

    monkeypatch.setenv("PERSONA_CRM__TOKEN", TOKEN)
    settings = load_settings(data_dir=str(data_dir), crm={"connector": "http", "url": hubspot.url})
    conn = make_connector(settings)
    assert isinstance(conn, HttpConnector)
    assert TOKEN not in repr(settings.crm)  # SecretStr keeps it out of logs and reprs
    box = Outbox(make_state_engine(settings.url(settings.state_url)))
    box.create_schema()
    enqueue(box, [change("P1", "high")])
    assert dispatcher(box, conn, FakeClock()).run_until_empty().delivered == 1


@pytest.mark.slow
def test_10k_changes_through_outages_are_applied_exactly_once(hubspot: FakeHubSpot, outbox: Outbox) -> None:
    """The CRM fails for a while (500s, down, 429s, lost acknowledgements) during 10,000 customers'
    changes; after it recovers every tag is applied once: the fake logs every value change it makes."""
    n = 10_000
    changes = [change(f"P{i:05d}", random.Random(i).choice(["high", "medium", "low"])) for i in range(n)]
    enqueue(outbox, changes)
    clock = FakeClock()
    # 0.3 s client time-out; lost acknowledgements answer after 0.6 s, having applied the batch.
    # Order of faults: 3 x 429, then 30 x 500 (the CRM is down), then 5 lost acknowledgements.
    hubspot.set_faults(
        rate_limit_next=3, retry_after="1", fail_next=30, fail_status=500, lost_ack_next=5, lost_ack_delay=0.6
    )
    stats = dispatcher(outbox, connector(hubspot, timeout=0.3), clock).run_until_empty()
    assert outbox.counts() == {"pending": 0, "delivered": n, "dead": 0, "superseded": 0, "unmatched": 0}
    applied = hubspot.applied
    assert len(applied) == n
    assert Counter(applied) == Counter((c.customer_id, c.crm_field, c.new_value) for c in changes)
    # the faults really happened: batches were re-sent after lost acknowledgements and 429s
    assert stats.rate_limited == 3 and hubspot.state.statuses[500] == 30 and stats.dead == 0
    assert sum(hubspot.state.received.values()) >= n + 5 * 100

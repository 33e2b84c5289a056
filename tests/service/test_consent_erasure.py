"""Consent withdrawal and the right to be forgotten, end to end on a copy of the trained world: the CLI
and the CRM source withdraw, the online store loses the customer, the CRM's Persona fields end empty
(embedded SQL CRM and the HubSpot-contract fake), re-ingest keeps the withdrawal, `persona forget`
erases the derived data and audits without personal data, and a running `persona serve` answers
`consent_withdrawn` without a restart."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.fakes.hubspot import FakeHubSpot
from tests.service.conftest import API_KEY, env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def persona(*args: str) -> None:
    from persona.cli import main

    assert main(list(args)) == 0, f"persona {' '.join(args)} failed"


@pytest.fixture
def copy(world: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the world (these tests withdraw and erase customers), scored and synced once."""
    data = tmp_path / "data"
    shutil.copytree(world, data, ignore=shutil.ignore_patterns("serve-*.log"))
    with env(PERSONA_DATA_DIR=str(data), PERSONA_CRM__CONNECTOR="sql"):
        persona("score", "--all")
        persona("crm", "sync")
        yield data


def tagged_contact(data: Path) -> tuple[str, str]:
    """(customer id, CRM contact id) of a customer that has non-empty Persona fields in the CRM."""
    with sqlite3.connect(data / "raw" / "crm.sqlite") as crm:
        row = crm.execute(
            "SELECT customer_id, contact_id FROM persona_tags WHERE contact_id != '' AND value IS NOT NULL "
            "GROUP BY customer_id, contact_id ORDER BY count(*) DESC, contact_id LIMIT 1"
        ).fetchone()
    assert row, "the world's CRM should hold tags after score + sync"
    return row[0], row[1]


def crm_values(data: Path, contact_id: str) -> dict[str, str | None]:
    with sqlite3.connect(data / "raw" / "crm.sqlite") as crm:
        rows = crm.execute(
            "SELECT crm_field, value FROM persona_tags WHERE contact_id = ?", (contact_id,)
        ).fetchall()
    return dict(rows)


def online_found(customer_id: str) -> bool:
    from configs.settings import load_settings
    from features.feast_io import get_store, online_features

    settings = load_settings()
    result = online_features(get_store(settings), customer_ids=[customer_id], service="churn_v1")
    return bool(result.found_mask[0])


def feature_rows(data: Path, customer_id: str) -> int:
    return sum(
        int((pd.read_parquet(p, columns=["customer_id"])["customer_id"] == customer_id).sum())
        for p in (data / "features").glob("*.parquet")
    )


def state(data: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{data}/state/persona.sqlite")


def test_cli_withdrawal_clears_the_crm_and_outlives_reingest(copy: Path) -> None:
    customer_id, contact_id = tagged_contact(copy)
    assert online_found(customer_id) and feature_rows(copy, customer_id)
    assert any(v is not None for v in crm_values(copy, contact_id).values())

    persona("consent", "withdraw", contact_id)  # the CRM's business key
    assert not online_found(customer_id)
    assert feature_rows(copy, customer_id) == 0
    with state(copy).connect() as conn:
        queued = conn.execute(
            sa.text(
                "SELECT count(*) FROM crm_outbox WHERE customer_id = :c AND status = 'pending' "
                "AND new_value IS NULL AND seq IS NOT NULL"
            ),
            {"c": customer_id},
        ).scalar_one()
    assert queued > 0
    persona("crm", "sync")
    fields = crm_values(copy, contact_id)
    assert fields and all(v is None for v in fields.values()), fields

    # the CRM still says yes; a re-ingest, rebuild and batch score keep them out
    persona("ingest")
    customers = pd.read_parquet(copy / "clean" / "customers.parquet").set_index("customer_id")
    assert not customers.loc[customer_id, "consent_profiling"]
    persona("features", "build")
    assert feature_rows(copy, customer_id) == 0
    persona("score", "--all")
    persona("crm", "sync")
    assert all(v is None for v in crm_values(copy, contact_id).values())


def test_withdrawal_in_the_crm_source_clears_on_the_next_ingest(copy: Path) -> None:
    customer_id, contact_id = tagged_contact(copy)
    with sqlite3.connect(copy / "raw" / "crm.sqlite") as crm:
        crm.execute("UPDATE contacts SET consent_profiling = 'N' WHERE contact_id = ?", (contact_id,))
    persona("ingest")  # finds the withdrawal, enforces it: online rows gone, clearing queued
    assert not online_found(customer_id)
    persona("crm", "sync")
    assert all(v is None for v in crm_values(copy, contact_id).values())
    with state(copy).connect() as conn:
        source = conn.execute(
            sa.text("SELECT source FROM consent_withdrawals WHERE customer_id = :c"), {"c": customer_id}
        ).scalar_one()
    assert source == "crm"


def test_forget_erases_derived_data_and_audits_without_personal_data(copy: Path) -> None:
    customer_id, contact_id = tagged_contact(copy)
    persona("forget", customer_id)
    assert not online_found(customer_id)
    assert feature_rows(copy, customer_id) == 0
    for table in ("orders", "events"):
        frame = pd.read_parquet(copy / "clean" / f"{table}.parquet", columns=["customer_id"])
        assert customer_id not in set(frame["customer_id"])
    with state(copy).connect() as conn:
        for table in ("tag_current", "tag_history"):
            left = conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE customer_id = :c"), {"c": customer_id}
            ).scalar_one()
            assert left == 0, table
        kept = conn.execute(
            sa.text("SELECT new_value, old_value, inputs, status FROM crm_outbox WHERE customer_id = :c"),
            {"c": customer_id},
        ).all()
        audit = conn.execute(sa.text("SELECT * FROM erasure_audit")).mappings().all()
    # the outbox keeps delivery bookkeeping only: the pending clearing, no values, no inputs
    assert all(r.old_value is None and json.loads(r.inputs) in ({}, None) for r in kept)
    assert all(r.new_value is None for r in kept)
    assert any(r.status == "pending" for r in kept)
    assert len(audit) == 1
    record = audit[0]
    text = json.dumps({k: str(v) for k, v in record.items()})
    assert customer_id not in text and contact_id not in text
    from configs.settings import load_settings
    from features.consent import subject_hash

    salt = load_settings().identity.salt.get_secret_value()
    assert record["subject_hash"] == subject_hash(customer_id, salt=salt)
    assert record["action"] == "forget"
    erased = json.loads(record["erased"])
    assert erased["current_tags"] > 0 and erased["tag_history_rows"] > 0 and erased["online_rows"] > 0

    persona("crm", "sync")
    assert all(v is None for v in crm_values(copy, contact_id).values())
    persona("ingest")  # forgotten stays forgotten
    customers = pd.read_parquet(copy / "clean" / "customers.parquet").set_index("customer_id")
    assert not customers.loc[customer_id, "consent_profiling"]


def test_withdrawal_clears_the_hubspot_contact(copy: Path) -> None:
    """The same clearing through the HTTP connector: HubSpot clears a property set to ''."""
    customer_id, contact_id = tagged_contact(copy)
    token = "hubspot-test-token-0123456789"
    with (
        FakeHubSpot(token=token) as hubspot,
        env(PERSONA_CRM__CONNECTOR="http", PERSONA_CRM__URL=hubspot.url, PERSONA_CRM__TOKEN=token),
    ):
        # the HubSpot CRM gets the current tags first (a fresh state DB's outbox, as on the first sync)
        with state(copy).begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE crm_outbox SET status = 'pending', next_attempt_at = 0 WHERE status = 'delivered'"
                )
            )
        persona("crm", "sync")
        props = {
            k: v for k, v in hubspot.state.contacts[contact_id].properties.items() if k.startswith("persona_")
        }
        assert any(props.values()), props
        persona("consent", "withdraw", customer_id)
        persona("crm", "sync")
        after = hubspot.state.contacts[contact_id].properties
        assert all(after[name] == "" for name in props if name != "persona_contact_id"), after


def test_running_service_answers_consent_withdrawn_within_seconds(copy: Path, tmp_path: Path) -> None:
    from tests.service.test_service_server import _start, _stop

    customer_id, _ = tagged_contact(copy)
    proc, base, _ = _start(
        copy, tmp_path, PERSONA_SERVING__WORKERS="1", PERSONA_SERVING__CONSENT_POLL_SECONDS="1"
    )
    try:

        def status() -> str:
            body = httpx.post(
                f"{base}/v1/score", json={"customer_ids": [customer_id]}, headers=AUTH, timeout=30
            )
            assert body.status_code == 200
            return body.json()["items"][0]["status"]

        assert status() == "ok"
        persona("consent", "withdraw", customer_id)
        withdrawn_at = time.monotonic()
        seen = status()
        while seen != "consent_withdrawn" and time.monotonic() - withdrawn_at < 30:
            time.sleep(0.25)
            seen = status()
        assert seen == "consent_withdrawn"  # no restart: the service polled the consent list
        print(f"\nconsent_withdrawn answered {time.monotonic() - withdrawn_at:.2f}s after the withdrawal")
    finally:
        _stop(proc)


def test_forget_leaves_no_recommender_history_anywhere(copy: Path) -> None:
    """The registered recommender holds no customer; the history table it is served with loses the
    forgotten customer; a freshly loaded service neither knows nor answers them; a retrain keeps them out."""
    from artifacts.recommend_history import history_path
    from artifacts.registry import champion_version, load_version
    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    settings = load_settings()
    table = history_path(settings)
    history = pd.read_parquet(table)
    withdrawn = set(load_state(settings).withdrawn)
    buyers = history.loc[~history["customer_id"].isin(withdrawn), "customer_id"].value_counts()
    customer_id = str(buyers.index[0])

    registered = load_version(settings, "recommend", champion_version(settings, "recommend")).bundle
    assert registered.customers == {} and registered.counts.shape[0] == 0  # nothing personal in MLflow
    before = load_state(settings)
    assert customer_id in before.models["recommend"].bundle.customers
    answer = Scorer(before).score([customer_id], write_back=False, now=datetime.now(UTC))["items"][0]
    assert any(e["kind"] == "buy_again" for e in answer["recommendations"]["items"])

    persona("forget", customer_id)
    assert customer_id not in set(pd.read_parquet(table)["customer_id"])
    assert len(pd.read_parquet(table)) == len(history) - int(buyers.iloc[0])  # nobody else lost
    after = load_state(settings)
    assert customer_id not in after.models["recommend"].bundle.customers
    answer = Scorer(after).score([customer_id], write_back=False, now=datetime.now(UTC))["items"][0]
    assert answer["status"] == "consent_withdrawn" and not answer.get("recommendations")

    persona("train", "recommend")
    assert customer_id not in set(pd.read_parquet(table)["customer_id"])

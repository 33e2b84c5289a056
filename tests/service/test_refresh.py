"""`persona refresh` on a copy of the session's world (issue 16's "done when"): the first run tags
everyone, a re-run on the same data changes nothing, a second day of generated orders (`persona data
generate --continue`, as the demo) is taken in with only the due cadence's tags recomputed, triggers fire
signed webhooks to a real HTTP receiver on 127.0.0.1, once per change (a 503 in between is retried, not
duplicated), one of them only for customers whose tags meet its `where` expression, and a segment list
is kept in step."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from features.ingest import clean_dir
from tests.fakes.webhook import SECRET, Receiver
from tests.service.conftest import env

# the expression trigger's condition: discount_sensitive is weekly (not recomputed by the daily run of
# day 2: read from the tag store), lifecycle_stage daily (recomputed with the rfm_r change that fires)
STAGES = ("active", "mature", "at_risk")
VALUED = f"not discount_sensitive and lifecycle_stage in {STAGES}"


def _in_step(settings) -> set[str]:  # type: ignore[no-untyped-def]
    """The CRM list `At risk` holds exactly the customers whose current rfm_segment says so (those
    without a CRM record key are parked as unmatched, not members and not dead). Returns the members."""
    state = sa.create_engine(settings.url(settings.state_url))
    crm = sa.create_engine(settings.url(settings.crm.url))
    with state.connect() as conn:
        wanted = {
            r[0]
            for r in conn.execute(
                sa.text(
                    "select customer_id from tag_current where tag = 'rfm_segment' "
                    "and value in ('at_risk', 'cant_lose')"
                )
            )
        }
        no_record = {
            r[0]
            for r in conn.execute(
                sa.text("select customer_id from segment_outbox where status = 'unmatched'")
            )
        }
        dead = conn.execute(sa.text("select count(*) from segment_outbox where status = 'dead'")).scalar_one()
        pending = conn.execute(
            sa.text("select count(*) from segment_outbox where status = 'pending'")
        ).scalar_one()
    with crm.connect() as conn:
        held = {
            r[0]
            for r in conn.execute(
                sa.text(
                    "select distinct customer_id from persona_list_members where list_name = 'At risk' and member"
                )
            )
        }
    assert pending == 0 and dead == 0 and wanted, (pending, dead, len(wanted))
    assert held == wanted - no_record
    return held


@pytest.fixture
def copy_of_world(world: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(world, data_dir)
    return data_dir


def test_refresh_day_two_with_triggers(copy_of_world: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from configs.settings import load_settings
    from persona.cli import main
    from serving.refresh import load_refresh_state

    config = tmp_path / "persona.yaml"
    with Receiver(fail_first=1) as receiver:
        config.write_text(
            "triggers:\n  rules:\n"
            "    - name: recency_moved\n      tag: rfm_r\n"
            f"      webhook: {{url: '{receiver.url}', secret_env: PERSONA_TEST_HOOK_SECRET}}\n"
            "      crm_note: {body: 'recency score {old_value} -> {new_value}'}\n"
            "    - name: valued_recency_moved\n      tag: rfm_r\n"
            f'      where: "{VALUED}"\n'
            f"      webhook: {{url: '{receiver.url}', secret_env: PERSONA_TEST_HOOK_SECRET}}\n"
            "segments:\n  sync:\n"
            "    - name: at_risk\n"
            "      where: \"rfm_segment in ('at_risk', 'cant_lose')\"\n"
            "      list_name: At risk\n",
            encoding="utf-8",
        )
        with env(
            PERSONA_DATA_DIR=str(copy_of_world),
            PERSONA_CONFIG=str(config),
            PERSONA_TEST_HOOK_SECRET=SECRET,
            PERSONA_CRM__BASE_DELAY_SECONDS="0.05",
            PERSONA_CRM__MAX_DELAY_SECONDS="0.2",
        ):
            settings = load_settings(str(config))
            # the registry records absolute table paths: point it at the copy's tables
            assert main(["features", "apply"]) == 0
            # day 1: nothing was tagged yet: every tag is due, everyone gets tags, all delivered
            assert main(["refresh"]) == 0
            out = capsys.readouterr().out
            first = load_refresh_state(settings)
            assert "tags recomputed: " in out and "not due: 0" in out, out
            assert "crm: delivered " in out and "dead-lettered 0," in out, out
            assert "segment at_risk: " in out and "lists: delivered " in out, out
            members_first = _in_step(settings)
            queued_first = int(out.split("tag changes queued: ")[1].split()[0].replace(",", ""))
            assert queued_first > 0
            # first tagging is a change from unset for every customer: triggers fire for each rfm_r
            firings_first = len(receiver.calls)

            # the same data again: nothing recomputed, nothing queued, no trigger
            assert main(["refresh"]) == 0
            out = capsys.readouterr().out
            assert "no source data newer than the last refresh's as_of" in out, out
            assert "tag changes queued" not in out and len(receiver.calls) == firings_first

            engine = sa.create_engine(settings.url(settings.state_url))
            with engine.connect() as conn:
                last_id = conn.execute(sa.text("select max(id) from crm_outbox")).scalar_one()
            # day 2: the generator's next day of orders (the demo's step); the daily run recomputes
            # daily tags only
            assert main(["data", "generate", "--continue", "--days", "1"]) == 0
            generated = capsys.readouterr().out
            added = int(generated.split("added ")[1].split(" orders")[0].replace(",", ""))
            assert added > 0, generated
            before = {c["change_id"] for c in receiver.calls}
            assert main(["refresh", "--cadence", "daily"]) == 0
            out = capsys.readouterr().out
            # only the new day's orders are read, and only their customers re-ingested
            ingest_line = out.split("ingest: ")[1].splitlines()[0]
            assert ingest_line.startswith(f"{added} new rows (orders {added}) -> "), ingest_line
            assert ingest_line.endswith(" customers re-ingested"), ingest_line
            touched = int(ingest_line.split(" -> ")[1].split(" ")[0].replace(",", ""))
            everyone = len(pd.read_parquet(clean_dir(settings) / "customers.parquet"))
            assert 0 < touched < everyone / 2, (touched, everyone)  # a day of orders is not a full ingest
            second = load_refresh_state(settings)
            members_second = _in_step(settings)
            assert members_first != members_second, "the list did not move with the new day"
            assert pd.Timestamp(second["as_of"]) > pd.Timestamp(first["as_of"])
            assert second["snapshot"] > first["snapshot"]

    from artifacts.catalog import load_catalog

    catalog = load_catalog(settings)
    daily = {t.key for t in catalog.tags if t.cadence in ("realtime", "hourly", "daily")}
    weekly = {t.key for t in catalog.tags} - daily
    assert weekly, "the catalog has weekly tags"
    recomputed = out.split("tags recomputed: ")[1].split("(")[1].split(")")[0].split(", ")
    assert set(recomputed) == daily
    # the weekly tags kept their day-1 computation time; the daily ones moved to day 2
    assert all(second["tags"][t] == first["tags"][t] for t in weekly)
    assert all(second["tags"][t] == second["as_of"] for t in daily)
    # what was queued on day 2 touches daily tags only (read from the outbox itself)
    with engine.connect() as conn:
        day2 = dict(
            conn.execute(
                sa.text("select tag, count(*) from crm_outbox where id > :last group by tag"),
                {"last": last_id},
            ).all()
        )
        fired = conn.execute(
            sa.text(
                "select count(*), count(distinct change_id) from trigger_outbox where crm_field = 'webhook'"
            )
        ).one()
        undelivered = conn.execute(
            sa.text(
                "select count(*) from trigger_outbox where status != 'delivered' and crm_field = 'webhook'"
            )
        ).scalar_one()
        # notes: delivered, or parked for customers with no CRM record key (none dead, none pending)
        notes_by_status = dict(
            conn.execute(
                sa.text(
                    "select status, count(*) from trigger_outbox where crm_field = 'crm_note' group by status"
                )
            ).all()
        )
    # the trigger: exactly one accepted call per firing, every signature valid, none lost or repeated
    assert receiver.bad_signatures == 0
    ids = Counter(c["change_id"] for c in receiver.calls)
    assert set(ids.values()) == {1} and len(ids) == fired[0] == fired[1] and undelivered == 0
    recency_calls = [c for c in receiver.calls if c["trigger"] == "recency_moved"]
    assert set(notes_by_status) <= {"delivered", "unmatched"}
    assert sum(notes_by_status.values()) == len(recency_calls)
    # the same firings made one note each on the customer's CRM contact records (SQL CRM), none twice
    crm = sa.create_engine(settings.url(settings.crm.url))
    with crm.connect() as conn:
        notes = conn.execute(
            sa.text(
                "select count(distinct change_id), count(*) from persona_crm_activities where kind = 'note'"
            )
        ).one()
        contacts = conn.execute(
            sa.text("select count(distinct change_id || contact_id) from persona_crm_activities")
        ).scalar_one()
    assert notes[0] == notes_by_status["delivered"] and notes[1] == contacts
    new_calls = [c for c in recency_calls if c["change_id"] not in before]
    assert new_calls, "the new day moved some customers' recency score"
    # the `where` expression: of the customers whose recency score moved on day 2, exactly those whose
    # tags after the run (as the CRM holds them) meet it got the second trigger, once each
    with engine.connect() as conn:
        moved = {
            r[0]
            for r in conn.execute(
                sa.text("select customer_id from crm_outbox where id > :last and tag = 'rfm_r'"),
                {"last": last_id},
            )
        }
        held = (
            pd.DataFrame(
                conn.execute(
                    sa.text(
                        "select customer_id, tag, value from tag_current "
                        "where tag in ('discount_sensitive', 'lifecycle_stage')"
                    )
                ).all(),
                columns=["customer_id", "tag", "value"],
            )
            .pivot(index="customer_id", columns="tag", values="value")
            .reindex(index=sorted(moved), columns=["discount_sensitive", "lifecycle_stage"])
        )
    # a flag unset reads false; a comparison with an unset tier is false
    meets = (held["discount_sensitive"] != "true") & held["lifecycle_stage"].isin(STAGES)
    expected = set(held.index[meets])
    fired_valued = Counter(
        c["customer_id"]
        for c in receiver.calls
        if c["trigger"] == "valued_recency_moved" and c["change_id"] not in before
    )
    assert expected and expected != moved, (len(expected), len(moved), held.value_counts(dropna=False))
    assert set(fired_valued) == expected and set(fired_valued.values()) == {1}
    assert all(
        c["where"]["lifecycle_stage"] in STAGES and c["where"]["discount_sensitive"] != "true"
        for c in receiver.calls
        if c["trigger"] == "valued_recency_moved"
    )
    call = new_calls[0]
    assert call["trigger"] == "recency_moved" and call["change"]["tag"] == "rfm_r"
    assert call["change"]["new_value"] != call["change"]["old_value"] and "recency_days" in call["reasons"]
    assert call["customer_id"]
    assert day2 and set(day2) <= daily, day2
    # the online store serves the new snapshot (what /v1/score reads)
    online = sa.create_engine(f"sqlite:///{settings.path(settings.feast.sqlite_path)}")
    with online.connect() as conn:
        served = conn.execute(sa.text("select max(event_ts) from persona_customer_transactions")).scalar_one()
    assert pd.Timestamp(served, unit="s", tz="UTC") == pd.Timestamp(second["snapshot"], tz="UTC")
    assert f"  rfm_r: {day2['rfm_r']:,}" in out

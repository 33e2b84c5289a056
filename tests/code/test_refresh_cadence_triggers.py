"""Which tags a refresh recomputes (cadence on the data's clock) and which changes fire a trigger."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from configs.sections.triggers import TriggerRule, TriggersConfig
from core.errors import PersonaError
from serving.changes import TagChange
from serving.refresh import due_tags
from serving.triggers import fire, payload, sign, verify

CADENCES = {
    "rfm_r": "daily",
    "persona_name": "weekly",
    "value_tier": "weekly",
    "live": "realtime",
    "m": "monthly",
}


def test_first_run_recomputes_everything() -> None:
    assert due_tags(CADENCES, as_of=pd.Timestamp("2026-01-07T10:00Z"), last_computed={}) == list(CADENCES)


def test_due_by_the_data_clock_entering_a_new_period() -> None:
    last = {k: "2026-01-07T10:00:00+00:00" for k in CADENCES}  # a Wednesday
    # same day: only realtime
    assert due_tags(CADENCES, as_of=pd.Timestamp("2026-01-07T23:00Z"), last_computed=last) == ["live"]
    # next day, same ISO week and month: daily and realtime
    assert due_tags(CADENCES, as_of=pd.Timestamp("2026-01-08T01:00Z"), last_computed=last) == [
        "rfm_r",
        "live",
    ]
    # next Monday: weekly ones too; February: monthly as well
    assert set(due_tags(CADENCES, as_of=pd.Timestamp("2026-01-12T00:00Z"), last_computed=last)) == {
        "rfm_r", "persona_name", "value_tier", "live"
    }  # fmt: skip
    assert set(due_tags(CADENCES, as_of=pd.Timestamp("2026-02-01T00:00Z"), last_computed=last)) == set(
        CADENCES
    )


def test_cadence_flag_and_all() -> None:
    last = {k: "2026-01-07T10:00:00+00:00" for k in CADENCES}
    same_day = pd.Timestamp("2026-01-07T11:00Z")
    assert due_tags(CADENCES, as_of=same_day, last_computed=last, cadence="daily") == ["rfm_r", "live"]
    assert set(due_tags(CADENCES, as_of=same_day, last_computed=last, cadence="weekly")) == set(CADENCES) - {
        "m"
    }
    assert due_tags(CADENCES, as_of=same_day, last_computed=last, everything=True) == list(CADENCES)
    with pytest.raises(PersonaError, match="--cadence: one of"):
        due_tags(CADENCES, as_of=same_day, last_computed=last, cadence="yearly")


AT = datetime(2026, 1, 8, 2, 0, tzinfo=UTC)


def change(customer: str, tag: str, old: str | None, new: str | None) -> TagChange:
    return TagChange(
        customer_id=customer, tag=tag, crm_field=f"persona_{tag}", old_value=old, new_value=new,
        changed_at=AT, produced_by="model:persona-churn@3", inputs={"churn_probability": 0.81},
    )  # fmt: skip


RULE = TriggerRule(
    name="churn_alert_top",
    tag="churn_risk",
    becomes="high",
    where={"value_tier": "top"},
    webhook={"url": "http://127.0.0.1:1/hook"},
)


def test_rule_fires_only_on_the_value_and_where() -> None:
    tags = pd.DataFrame(
        {"customer_id": ["A", "B", "C", "D"], "value_tier": ["top", "standard", "top", "top"]}
    )
    changes = [
        change("A", "churn_risk", "medium", "high"),  # fires
        change("B", "churn_risk", "low", "high"),  # not top value
        change("C", "churn_risk", "high", "medium"),  # not becoming high
        change("D", "value_tier", "high", "top"),  # another tag
        change("E", "churn_risk", None, "high"),  # no current tags known: `where` cannot hold
    ]
    fired = fire([RULE], changes, tags)
    assert [(f.customer_id, f.tag, f.old_value, f.new_value) for f in fired] == [
        ("A", "churn_alert_top", "medium", "high")
    ]
    body = payload(type("E", (), {"change": fired[0], "id": 1})())  # an outbox entry's shape
    assert body["change"] == {
        "tag": "churn_risk", "old_value": "medium", "new_value": "high",
        "changed_at": AT.isoformat(), "produced_by": "model:persona-churn@3",
    }  # fmt: skip
    assert body["where"] == {"value_tier": "top"} and body["reasons"] == {"churn_probability": 0.81}


def test_a_repeated_change_has_the_same_key_a_new_one_another() -> None:
    tags = pd.DataFrame({"customer_id": ["A"], "value_tier": ["top"]})
    once = fire([RULE], [change("A", "churn_risk", "medium", "high")], tags)[0]
    again = fire([RULE], [change("A", "churn_risk", "medium", "high")], tags)[0]
    assert once.idempotency_key == again.idempotency_key
    moved = change("A", "churn_risk", "medium", "high")
    moved = TagChange(
        customer_id=moved.customer_id, tag=moved.tag, crm_field=moved.crm_field, old_value="low",
        new_value="high", changed_at=datetime(2026, 2, 1, tzinfo=UTC), produced_by=moved.produced_by,
    )  # fmt: skip
    assert fire([RULE], [moved], tags)[0].idempotency_key != once.idempotency_key


TYPES = {
    "churn_risk": "tier",
    "value_tier": "tier",
    "persona_name": "category",
    "rfm_r": "number",
    "is_new": "flag",
}


def test_trigger_where_is_any_tag_expression() -> None:
    rule = TriggerRule(
        name="save_top",
        tag="churn_risk",
        becomes="high",
        where="value_tier == 'top' and persona_name != 'Lapsed' and (rfm_r >= 3 or not is_new)",
        webhook={"url": "http://127.0.0.1:1/hook"},
    )
    tags = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "F", "G"],
            "churn_risk": ["high"] * 6,
            "value_tier": ["top", "top", "standard", "top", "top", None],
            "persona_name": ["Loyal", "Lapsed", "Loyal", None, "Loyal", "Loyal"],
            "rfm_r": ["4", "4", "4", "4", "1", "4"],
            "is_new": ["false", "false", "false", "false", "true", "false"],
        }
    )
    changes = [change(c, "churn_risk", "medium", "high") for c in "ABCDEFG"]
    changes.append(change("A", "churn_risk", "high", "medium"))  # the change that fires stays explicit
    fired = fire([rule], changes, tags, tag_types=TYPES)
    # B: Lapsed; C: not top; D: persona unset (a comparison with null is false); E: no current tags;
    # F: recency 1 and new; G: value tier unset
    assert [(f.customer_id, f.new_value) for f in fired] == [("A", "high")]
    body = payload(type("E", (), {"change": fired[0], "id": 1})())
    assert body["where"] == {"value_tier": "top", "persona_name": "Loyal", "rfm_r": "4", "is_new": "false"}
    # the mapping form is the same condition as the expression that spells it out
    mapping = rule.model_copy(update={"where": {"value_tier": "top", "persona_name": ["Loyal", "New"]}})
    spelled = rule.model_copy(update={"where": "value_tier = 'top' and persona_name in ('Loyal', 'New')"})
    by_mapping = fire([mapping], changes, tags, tag_types=TYPES)
    assert [f.customer_id for f in by_mapping] == ["A", "F"]
    assert [f.customer_id for f in fire([spelled], changes, tags, tag_types=TYPES)] == ["A", "F"]


def test_where_in_a_run_reads_the_stored_value_of_a_tag_not_due(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from serving.outbox import make_state_engine
    from serving.tag_store import TagStore
    from serving.triggers import fire_in_run

    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    store = TagStore(engine, crm_fields={"churn_risk": "a", "value_tier": "b"})
    store.create_schema()
    held = pd.DataFrame({"customer_id": ["A", "B"], "value_tier": ["standard", "top"]})
    with engine.begin() as conn:
        store.apply(conn, tags=held, produced_by={"value_tier": "rule:x@1"}, at=AT)
    rule = RULE.model_copy(update={"where": "value_tier = 'top'"})
    # this run evaluated value_tier afresh (A: top, B: standard) but records only the due churn_risk
    evaluated = pd.DataFrame(
        {"customer_id": ["A", "B", "C"], "churn_risk": ["high"] * 3, "value_tier": ["top", "standard", "top"]}
    )
    changes = [change(c, "churn_risk", "low", "high") for c in "ABC"]
    with engine.begin() as conn:
        kept = fire_in_run(conn, [rule], changes, evaluated, tag_types=TYPES, not_recomputed=["value_tier"])
        fresh = fire_in_run(conn, [rule], changes, evaluated, tag_types=TYPES, not_recomputed=[])
    # not due: the CRM still shows A standard and B top (C has no stored value_tier: unset)
    assert [(f.customer_id, f.inputs["where"]) for f in kept] == [("B", {"value_tier": "top"})]
    # due: the value the run records is the one the CRM gets
    assert [f.customer_id for f in fresh] == ["A", "C"]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {"where": "value_tier = 'top' and churn_rsk = 'high'"},
            "triggers.rules[bad].where: unknown tag 'churn_rsk' (did you mean 'churn_risk'?) at character 24",
        ),
        ({"where": "value_tier = 'top' and"}, "triggers.rules[bad].where: "),
        (
            {"where": "rfm_r = 'high'"},
            "triggers.rules[bad].where: comparison '=': cannot mix a number and a string",
        ),
        ({"where": "rfm_r + 1"}, "triggers.rules[bad].where: must be a condition (true or false)"),
        ({"where": {"value_tiers": "top"}}, "triggers.rules[bad].where: unknown tag 'value_tiers'"),
        ({"tag": "churn"}, "triggers.rules[bad].tag: unknown tag 'churn'"),
        (
            {"becomes": ["medium", "hihg"]},
            "triggers.rules[bad].becomes: 'hihg' is not a value of tag 'churn_risk'",
        ),
    ],
)
def test_trigger_conditions_are_checked_with_the_config_key(update: dict, message: str) -> None:  # type: ignore[type-arg]
    from core.errors import ConfigError
    from serving.triggers import check_trigger_rules

    rule = TriggerRule(**{"name": "bad", "tag": "churn_risk", "webhook": {"url": "http://x"}, **update})
    with pytest.raises(ConfigError) as caught:
        check_trigger_rules([rule], TYPES, {"churn_risk": ("low", "medium", "high")})
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text, text
    with pytest.raises(ValueError, match="a tag expression"):
        TriggerRule(name="blank", tag="churn_risk", where=" ", webhook={"url": "http://x"})


def test_refresh_refuses_a_bad_trigger_expression_before_any_work(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from persona.cli import main

    config = tmp_path / "persona.yaml"
    config.write_text(
        "triggers:\n  rules:\n    - name: vip_alert\n      tag: churn_risk\n      becomes: high\n"
        "      where: \"value_tier = 'top' and churn_rsk = 'high'\"\n"
        "      webhook: {url: 'http://127.0.0.1:1/hook'}\n"
    )
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "data"))
    assert main(["--config", str(config), "refresh"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: triggers.rules[vip_alert].where: unknown tag 'churn_rsk'") and "\n" not in err
    )
    assert not (tmp_path / "data" / "state").exists()  # nothing locked, read or written


def test_signature_round_trip_and_tamper() -> None:
    sig = sign("s3cret", timestamp="1767225600", body=b'{"a":1}')
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("s3cret", timestamp="1767225600", body=b'{"a":1}', signature=sig)
    assert not verify("s3cret", timestamp="1767225600", body=b'{"a":2}', signature=sig)
    assert not verify("s3cret", timestamp="1767225601", body=b'{"a":1}', signature=sig)
    assert not verify("other", timestamp="1767225600", body=b'{"a":1}', signature=sig)


def test_trigger_config_is_checked() -> None:
    with pytest.raises(ValueError, match="unique"):
        TriggersConfig(rules=[RULE, RULE])
    with pytest.raises(ValueError):
        TriggerRule(name="Bad Name", tag="x", webhook={"url": "http://x"})


def test_trigger_outbox_delivers_every_firing_once_dead_letters_and_replays(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from serving.dispatcher import Dispatcher
    from serving.outbox import make_state_engine
    from serving.triggers import WebhookConnector, trigger_outbox
    from tests.fakes.webhook import SECRET, Receiver

    monkeypatch.setenv("PERSONA_WEBHOOK_SECRET", SECRET)
    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    outbox = trigger_outbox(engine)
    tags = pd.DataFrame({"customer_id": ["A", "B"], "value_tier": ["top", "top"]})
    with Receiver(fail_first=1, reject_customers=frozenset({"B"})) as receiver:
        rule = RULE.model_copy(update={"webhook": RULE.webhook.model_copy(update={"url": receiver.url})})
        first = fire([rule], [change("A", "churn_risk", "medium", "high")], tags)
        flip = TagChange(
            customer_id="A", tag="churn_risk", crm_field="persona_churn_risk", old_value="low",
            new_value="high", changed_at=datetime(2026, 2, 1, tzinfo=UTC), produced_by="model:persona-churn@3",
        )  # fmt: skip
        with engine.begin() as conn:
            assert outbox.enqueue(conn, first) == 1
            assert outbox.enqueue(conn, first) == 0  # the same change again: not queued twice
            # A's second firing (a later change) and B's (which the receiver refuses)
            assert (
                outbox.enqueue(conn, fire([rule], [flip, change("B", "churn_risk", "low", "high")], tags))
                == 2
            )
        clock = [time.time()]  # entries are queued on the wall clock
        dispatcher = Dispatcher(
            outbox, WebhookConnector([rule]), base_delay=0.01, max_delay=0.05,
            clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s),
        )  # fmt: skip
        stats = dispatcher.run_until_empty(deadline=clock[0] + 60)
        # both of A's firings delivered (triggers are never superseded), each accepted once despite the 503
        assert stats.superseded == 0 and stats.delivered == 2 and stats.dead == 1
        assert receiver.bad_signatures == 0
        assert sorted(c["change"]["old_value"] for c in receiver.calls) == ["low", "medium"]
        assert len({c["change_id"] for c in receiver.calls}) == 2
        # B's dead letter is replayed once the receiver accepts it
        receiver.reject_customers.clear()
        assert outbox.replay(now=clock[0]) == 1
        dispatcher.run_until_empty(deadline=clock[0] + 60)
        assert [c["customer_id"] for c in receiver.calls].count("B") == 1
        assert outbox.counts()["delivered"] == 3 and outbox.counts()["dead"] == 0


def test_segment_lists_follow_the_tags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from configs.sections.segments import SegmentRule
    from serving.dispatcher import Dispatcher
    from serving.outbox import make_state_engine
    from serving.segments import SqlListsConnector, list_members, segment_outbox, sync_segments
    from serving.tag_store import TagStore

    class Keys:  # every customer has one CRM record, "C" + its id
        record_key = "orders"

        def records_for(self, ids):  # type: ignore[no-untyped-def]
            return {i: [f"C{i}"] for i in ids}

    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    store = TagStore(
        engine, crm_fields={"churn_risk": "persona_churn_risk", "value_tier": "persona_value_tier"}
    )
    store.create_schema()
    crm = sa.create_engine(f"sqlite:///{tmp_path}/crm.sqlite")
    rule = SegmentRule(name="at_risk_top", where={"churn_risk": "high", "value_tier": ["top", "high"]})
    assert rule.list_name == "at_risk_top"
    by = {"churn_risk": "model:c@1", "value_tier": "model:v@1"}

    def tag(rows: dict[str, tuple[str, str]]) -> None:
        frame = pd.DataFrame(
            {"customer_id": list(rows), "churn_risk": [v[0] for v in rows.values()],
             "value_tier": [v[1] for v in rows.values()]}
        )  # fmt: skip
        with engine.begin() as conn:
            store.apply(conn, tags=frame, produced_by=by, at=AT)

    def deliver() -> set[str]:
        dispatcher = Dispatcher(segment_outbox(engine), SqlListsConnector(crm, resolver=Keys()))
        stats = dispatcher.run_until_empty(deadline=time.time() + 30)
        assert stats.dead == 0
        with crm.connect() as conn:
            t = list_members
            return {
                r[0]
                for r in conn.execute(
                    sa.select(t.c.contact_id).where(t.c.list_name == "at_risk_top", t.c.member)
                )
            }

    tag({"A": ("high", "top"), "B": ("high", "standard"), "C": ("low", "top"), "D": ("high", "high")})
    first = sync_segments(engine, [rule], at=AT)["at_risk_top"]
    assert (first.members, first.added, first.removed) == (2, 2, 0)
    assert deliver() == {"CA", "CD"}
    again = sync_segments(engine, [rule], at=AT)["at_risk_top"]  # nothing changed: nothing queued
    assert (again.added, again.removed) == (0, 0)
    tag({"A": ("low", "top"), "B": ("high", "top"), "C": ("low", "top"), "D": ("high", "high")})
    moved = sync_segments(engine, [rule], at=AT)["at_risk_top"]
    assert (moved.members, moved.added, moved.removed) == (2, 1, 1)
    assert deliver() == {"CB", "CD"}
    # A comes back: its list row flips back to member (a newer seq), not a duplicate
    tag({"A": ("high", "top"), "B": ("high", "top"), "C": ("low", "top"), "D": ("high", "high")})
    sync_segments(engine, [rule], at=AT)
    assert deliver() == {"CA", "CB", "CD"}


def test_segment_where_is_any_tag_expression(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from configs.sections.segments import SegmentRule
    from serving.outbox import make_state_engine
    from serving.segments import sync_segments
    from serving.tag_store import TagStore

    engine = make_state_engine(f"sqlite:///{tmp_path}/state.sqlite")
    store = TagStore(engine, crm_fields={"churn_risk": "a", "value_tier": "b", "rfm_r": "c", "is_new": "d"})
    store.create_schema()
    types = {"churn_risk": "tier", "value_tier": "tier", "rfm_r": "number", "is_new": "flag"}
    frame = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "churn_risk": ["high", "high", "high", "low", None],
            "value_tier": ["top", "standard", "standard", "top", "top"],
            "rfm_r": ["2", "4", "1", None, "5"],
            "is_new": ["false", "false", "true", "false", "false"],
        }
    )
    with engine.begin() as conn:
        store.apply(conn, tags=frame, produced_by={k: "rule:x@1" for k in types}, at=AT)
    rule = SegmentRule(
        name="save_them",
        where="churn_risk = 'high' and (value_tier in ('top', 'high') or rfm_r >= 4) and not is_new",
    )
    synced = sync_segments(engine, [rule], at=AT, tag_types=types)["save_them"]
    # A: top; B: recent enough; C: new (excluded); D: not high; E: churn_risk unset (null compares false)
    assert (synced.members, synced.added, synced.removed) == (2, 2, 0)
    with engine.connect() as conn:
        members = {r[0] for r in conn.exec_driver_sql("select customer_id from segment_members")}
    assert members == {"A", "B"}
    # nulls: `is null` asks for them explicitly
    unset = SegmentRule(name="unknown_risk", where="churn_risk is null")
    assert sync_segments(engine, [unset], at=AT, tag_types=types)["unknown_risk"].members == 1


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "churn_rsk = 'high'",
            "segments.sync[bad].where: unknown tag 'churn_rsk' (did you mean 'churn_risk'?) at character 1",
        ),
        ("churn_risk = 'high' and", "segments.sync[bad].where: "),
        ("rfm_r = 'high'", "segments.sync[bad].where: comparison '=': cannot mix a number and a string"),
        ("rfm_r + 1", "segments.sync[bad].where: must be a condition (true or false)"),
    ],
)
def test_segment_expressions_are_checked_with_the_config_key(where: str, message: str) -> None:
    from configs.sections.segments import SegmentRule
    from core.errors import ConfigError
    from serving.segments import check_segment_rules

    types = {"churn_risk": "tier", "rfm_r": "number"}
    with pytest.raises(ConfigError) as caught:
        check_segment_rules([SegmentRule(name="bad", where=where)], types)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text, text
    with pytest.raises(ValueError, match="a tag expression"):
        SegmentRule(name="blank", where="  ")


def test_refresh_refuses_a_bad_segment_expression_before_any_work(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from persona.cli import main

    config = tmp_path / "persona.yaml"
    config.write_text(
        "segments:\n  sync:\n    - {name: vip, where: \"value_tier = 'top' and churn_rsk = 'high'\"}\n"
    )
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "data"))
    assert main(["--config", str(config), "refresh"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: segments.sync[vip].where: unknown tag 'churn_rsk'") and "\n" not in err, err
    assert not (tmp_path / "data" / "state").exists()  # nothing locked, read or written


def test_new_rows_since_counts_clean_rows_after_the_last_as_of() -> None:
    from serving.refresh import new_rows_since

    tables = {
        "orders": pd.DataFrame(
            {"order_ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True)}
        ),
        "events": None,
    }
    assert new_rows_since(tables, pd.Timestamp("2026-01-01T12:00Z")) == {"orders": 2}


def test_readme_trigger_and_segment_example_holds_against_the_catalog(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The README's `triggers` / `segments` YAML is what a user copies: it loads and every rule passes
    the checks `persona refresh` makes before it starts."""
    from pathlib import Path

    import yaml

    from artifacts.catalog import load_catalog
    from configs.settings import load_settings
    from serving.refresh import check_rules

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\ntriggers:\n", 1)[1].split("```", 1)[0]
    example = yaml.safe_load("triggers:\n" + block)
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    settings = load_settings(**example)
    assert any(isinstance(r.where, str) for r in settings.triggers.rules)
    tags = load_catalog(settings).tags
    check_rules(settings, {t.key: t.value_type for t in tags}, {t.key: t.values for t in tags})

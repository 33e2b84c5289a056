"""Segment sync: a persona, RFM segment, campaign arm or any tag expression (`models/tag_expr.py`, as
campaign audiences: `churn_risk = 'high' and value_tier in ('top', 'high')`) kept in step as a list in
the CRM. On each refresh the members (customers whose current tags match the rule) are compared
with the members already synced; adds and removes are recorded and queued in one transaction in the
`segment_outbox` and delivered by the same dispatcher as CRM tags (at least once, back-off, breaker,
dead letters). Removes of customers who withdrew consent follow from their tags being cleared.

An HTTP CRM gets HubSpot lists (`serving/connectors/hubspot_lists.py`). The embedded SQL CRM keeps lists in `persona_list_members` (one row per list and contact, `member`
true or false, applied only by a newer `seq`, so a re-delivery or an older change lands as a no-op).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from serving import conditions
from serving.changes import TagChange
from serving.conditions import Condition
from serving.connectors.base import Connector, SendResult, no_record_reason
from serving.outbox import Outbox, OutboxEntry, segment_outbox_table
from serving.tag_store import tag_current

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from configs.sections.segments import SegmentRule
    from configs.settings import Settings
    from serving.record_keys import RecordKeys

MEMBER = "member"

_state = sa.MetaData()
segment_members = sa.Table(
    "segment_members",
    _state,
    sa.Column("segment", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(64), primary_key=True),
)

_crm = sa.MetaData()
list_members = sa.Table(
    "persona_list_members",
    _crm,
    sa.Column("list_name", sa.String(256), primary_key=True),
    sa.Column("contact_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("change_id", sa.String(32), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass
class SegmentSync:
    members: int
    added: int
    removed: int


def segment_outbox(engine: Engine) -> Outbox:
    """The outbox of list memberships (a newer membership change supersedes an unsent older one)."""
    outbox = Outbox(engine, table=segment_outbox_table)
    outbox.create_schema()
    _state.create_all(engine, checkfirst=True)
    return outbox


def compile_where(rule: SegmentRule, tag_types: Mapping[str, str] | None) -> Condition:
    """`rule.where` compiled (`serving.conditions`); a ConfigError naming `segments.sync[<name>].where`
    when it names an unknown tag or does not parse or type-check against the catalog."""
    return conditions.compile_where(rule.where, tag_types=tag_types, key=f"segments.sync[{rule.name}].where")


def check_segment_rules(rules: list[SegmentRule], tag_types: Mapping[str, str]) -> None:
    """Every rule's `where` is valid against the catalog (else a one-line ConfigError naming the key)."""
    for rule in rules:
        compile_where(rule, tag_types)


def _current_values(conn: sa.Connection, tags: tuple[str, ...], *, everyone: bool) -> pd.DataFrame:
    """customer_id + one column per tag (stored strings, None = unset) for every customer with any
    current tag (`everyone`), else for those with one of `tags`."""
    t = tag_current
    rows = pd.DataFrame(
        conn.execute(sa.select(t.c.customer_id, t.c.tag, t.c.value).where(t.c.tag.in_(tags))).all(),
        columns=["customer_id", "tag", "value"],
    )
    wide = rows.pivot(index="customer_id", columns="tag", values="value") if len(rows) else pd.DataFrame()
    ids = (
        conn.execute(sa.select(t.c.customer_id).distinct()).all()
        if everyone
        else [(c,) for c in rows["customer_id"].unique()]
    )
    out = pd.DataFrame(ids, columns=["customer_id"]).merge(
        wide, left_on="customer_id", right_index=True, how="left"
    )
    for tag in tags:
        if tag not in out:
            out[tag] = None
    return out.astype(object).where(out.notna(), None)


def members_of(conn: sa.Connection, condition: Condition) -> set[str]:
    """Customers whose current tags (tag store) meet `condition` (see `compile_where`)."""
    # an expression may ask for unset tags (`is null`): it reads every tagged customer; a mapping
    # holds only for customers with its tags set, so it skips the scan for the others
    values = _current_values(conn, condition.tags, everyone=condition.audience is not None)
    return set(values.loc[condition.select(values), "customer_id"].astype(str))


def sync_segments(
    engine: Engine,
    rules: list[SegmentRule],
    *,
    at: datetime,
    tag_types: Mapping[str, str] | None = None,
) -> dict[str, SegmentSync]:
    """Compare each rule's members with those synced before; record and queue adds and removes in one
    transaction. Running it again with no tag change queues nothing. `tag_types` (tag -> catalog type)
    is needed for rules whose `where` is an expression."""
    compiled = {rule.name: compile_where(rule, tag_types) for rule in rules}
    outbox = segment_outbox(engine)
    out: dict[str, SegmentSync] = {}
    s = segment_members
    with engine.begin() as conn:
        for rule in rules:
            wanted = members_of(conn, compiled[rule.name])
            held = {r[0] for r in conn.execute(sa.select(s.c.customer_id).where(s.c.segment == rule.name))}
            added, removed = sorted(wanted - held), sorted(held - wanted)
            if added:
                conn.execute(sa.insert(s), [{"segment": rule.name, "customer_id": c} for c in added])
            for start in range(0, len(removed), 500):
                conn.execute(
                    sa.delete(s).where(
                        s.c.segment == rule.name, s.c.customer_id.in_(removed[start : start + 500])
                    )
                )
            changes = [
                TagChange(
                    customer_id=customer,
                    tag=rule.name,
                    crm_field=rule.list_name,
                    old_value=None if value else MEMBER,
                    new_value=MEMBER if value else None,
                    changed_at=at,
                    produced_by=f"segment:{rule.name}",
                    inputs={"where": rule.where if isinstance(rule.where, str) else dict(rule.where)},
                )
                for customers, value in ((added, True), (removed, False))
                for customer in customers
            ]
            outbox.enqueue(conn, changes)
            out[rule.name] = SegmentSync(members=len(wanted), added=len(added), removed=len(removed))
    return out


class SqlListsConnector(Connector):
    """List memberships in the SQL CRM's `persona_list_members`, addressed like its tags (RecordKeys)."""

    name = "sql-lists"
    max_batch = 5000

    def __init__(self, engine: Engine, *, resolver: RecordKeys) -> None:
        self.engine = engine
        self.resolver = resolver
        _crm.create_all(engine, checkfirst=True)

    def send(self, entries: list[OutboxEntry]) -> SendResult:
        contacts = self.resolver.records_for({e.change.customer_id for e in entries})
        unmatched = {
            e.id: no_record_reason(e.change.customer_id, self.resolver.record_key)
            for e in entries
            if not contacts.get(e.change.customer_id)
        }
        t = list_members
        applied = 0
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for entry in entries:
                if entry.id in unmatched:
                    continue
                change = entry.change
                seq = change.seq or 0
                for contact_id in contacts[change.customer_id]:
                    key = sa.and_(t.c.list_name == change.crm_field, t.c.contact_id == contact_id)
                    stored = conn.execute(sa.select(t.c.seq).where(key)).scalar_one_or_none()
                    row: dict[str, Any] = {
                        "customer_id": change.customer_id,
                        "member": change.new_value == MEMBER,
                        "seq": seq,
                        "change_id": change.change_id,
                        "updated_at": now,
                    }
                    if stored is None:
                        conn.execute(
                            sa.insert(t).values(list_name=change.crm_field, contact_id=contact_id, **row)
                        )
                        applied += 1
                    elif stored < seq:  # an older change or a re-delivery changes nothing
                        conn.execute(sa.update(t).where(key).values(**row))
                        applied += 1
        return SendResult(unmatched=unmatched)


def build_segment_dispatcher(settings: Settings, *, engine: Engine):  # type: ignore[no-untyped-def]
    """A dispatcher for the segment outbox to the configured CRM (lists of the embedded SQL CRM)."""
    from core.errors import CrmError
    from serving.dispatcher import Dispatcher
    from serving.record_keys import RecordKeys

    crm = settings.crm
    resolver = RecordKeys(settings.path("{data_dir}/clean/identity_map.parquet"), record_key=crm.record_key)
    connector: Connector
    if crm.connector == "sql":
        connector = SqlListsConnector(sa.create_engine(settings.url(crm.url)), resolver=resolver)
    elif crm.connector == "http":
        from serving.connectors.hubspot_lists import HubSpotListsConnector

        connector = HubSpotListsConnector(
            settings.url(crm.url),
            token=crm.token.get_secret_value() if crm.token else None,
            id_property=crm.id_property,
            resolver=resolver,
            timeout=crm.timeout_seconds,
        )
    else:
        raise CrmError(f"segments.sync: no list connector for crm.connector {crm.connector!r}")
    return Dispatcher(
        segment_outbox(engine),
        connector,
        batch_size=crm.batch_size,
        give_up_after=crm.give_up_after,
        base_delay=crm.base_delay_seconds,
        max_delay=crm.max_delay_seconds,
        lease_seconds=crm.lease_seconds,
        poll_seconds=crm.poll_seconds,
    )

"""Ingest resolves identities on the events' distinct keys (with a count each) and writes the events'
identity rows from their staged file: on a generated world, where every person's key repeats across
dozens of orders and events, each record of the identity map must carry the person and the match rule
that resolving every record one by one gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.identity import KEY_KINDS, resolve
from features.normalize import normalize_emails, normalize_phones


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from configs.settings import load_settings
    from features.ingest import ingest_frames, read_sources, resolve_as_of
    from features.synthetic.generate import generate

    data_dir = tmp_path_factory.mktemp("distinct") / "data"
    settings = load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})
    generate(settings.generator.model_copy(update={"customers": 400}), out=data_dir / "raw")
    raw = read_sources(settings, lazy=False)
    frames = {name: table.frame for name, table in raw.items() if table is not None}
    result = ingest_frames(
        raw, sources=settings.sources, identity=settings.identity, as_of=resolve_as_of(settings)
    )
    return settings, frames, result


def _record_keys(settings, frames: dict[str, pd.DataFrame], identity_map: pd.DataFrame) -> pd.DataFrame:
    """The normalised keys of every record of the identity map, looked up in the raw sources by the
    record's id (orders and events route their reference as ingest does)."""
    from features.ingest import _route_refs

    region = settings.identity.default_region
    contacts = frames["contacts"].drop_duplicates("contact_id").set_index("contact_id")
    contact_ids = pd.Index(contacts.index.astype("string[pyarrow]"))

    def person(frame: pd.DataFrame, *, contact: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "contact_id": frame.index.to_series().astype("string[pyarrow]").to_numpy()
                if contact
                else None,
                "email": normalize_emails(frame["email"].astype("string[pyarrow]")).to_numpy(),
                "phone": normalize_phones(
                    frame["phone"].astype("string[pyarrow]"), default_region=region, cache={}
                ).to_numpy(),
            },
            index=frame.index.astype(str),
        )

    def routed(frame: pd.DataFrame, ref: str, source: str) -> pd.DataFrame:
        keys = _route_refs(
            frame[ref].astype("string[pyarrow]"),
            customer_key=getattr(settings.sources, source).customer_key,
            contact_ids=contact_ids,
            default_region=region,
            phone_cache={},
        )
        return keys.set_axis(frame.index.astype(str))

    orders = frames["orders"].drop_duplicates("order_id").set_index("order_id")
    events = frames["events"].drop_duplicates("event_id").set_index("event_id")
    by_source = {
        "contacts": person(contacts, contact=True),
        "leads": person(frames["leads"].drop_duplicates("lead_id").set_index("lead_id"), contact=False),
        "orders": routed(orders, "customer_ref", "orders"),
        "events": routed(events, "user_ref", "events"),
    }
    parts = []
    for source, keys in by_source.items():
        ids = identity_map.loc[identity_map["source"] == source, "source_record_id"].astype(str)
        parts.append(keys.reindex(ids.to_numpy()).reset_index(drop=True))
    return pd.concat(parts, ignore_index=True).astype("string[pyarrow]")[list(KEY_KINDS)]


def test_every_record_gets_the_person_and_rule_of_record_level_resolution(world) -> None:
    settings, frames, result = world
    identity_map = result.frame("identity_map")
    sources = identity_map["source"].astype(str)
    assert list(pd.unique(sources)) == ["contacts", "leads", "orders", "events"]  # priority order
    records = _record_keys(settings, frames, identity_map)
    assert records.notna().any(axis=1).all()  # every record found its keys
    events = (sources == "events").to_numpy()
    event_keys = records[events].apply(tuple, axis=1)
    assert event_keys.duplicated().mean() > 0.9  # the events repeat their persons' keys

    expected = resolve(records, salt=settings.identity.salt.get_secret_value())
    got_ids = identity_map["customer_id"].astype(str).to_numpy()
    got_rules = identity_map["match_rule"].astype(str).to_numpy()
    assert np.array_equal(got_ids, expected["customer_id"].astype(str).to_numpy())
    assert np.array_equal(got_rules, expected["match_rule"].astype(str).to_numpy())
    # the events' own rules include persons first seen in the events (anchors) and repeats of each kind
    assert {"new", "email_exact", "phone_e164"} <= set(got_rules[events])
    counts = pd.Series(got_rules).value_counts()
    assert result.match_rules == {str(k): int(v) for k, v in counts.items()}


def test_clean_events_are_the_kept_events_with_their_persons_in_time_order(world) -> None:
    _, _, result = world
    events = result.frame("events")
    identity_map = result.frame("identity_map")
    assert len(events) == result.sources["events"].kept == int((identity_map["source"] == "events").sum())
    assert events["event_ts"].is_monotonic_increasing
    assert str(events["event_ts"].dtype) == "datetime64[us, UTC]"
    per_person = events["customer_id"].value_counts()
    mapped = identity_map.loc[identity_map["source"] == "events", "customer_id"].value_counts()
    pd.testing.assert_series_equal(per_person.sort_index(), mapped.sort_index(), check_names=False)

"""The events are typed and validated chunk by chunk (`features.chunked`): the quarantine and the clean
tables do not depend on where the chunks split, and what spans chunks (an exact duplicate row, a repeated
event id) is found across them."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from configs.settings import load_settings
from core.errors import SourceError
from features import chunked, readers
from features.ingest import ingest_frames, read_sources, resolve_as_of

ORDERS = [
    "order_id,customer_ref,order_ts,amount,discount,quantity,category,status",
    "O1,ann@example.com,2024-02-01T12:00:00Z,100,10,2,books,completed",
    "O2,13800138000,2024-02-03,20,0,1,toys,completed",
]
# row: what the row is (1-based data rows, as the quarantine counts them)
EVENTS = [
    "event_id,user_ref,event_type,event_ts,channel",
    "E1,ann@example.com,visit,2024-03-01T10:00:00Z,web",  # 1 kept
    "E2,13800138000,email_open,2024-03-02,email",  # 2 kept
    "E3,ann@example.com,visit,not a date,web",  # 3 timestamp_unparseable
    "E1,13800138000,visit,2024-03-03,web",  # 4 duplicate_id (E1 is row 1's)
    "E2,13800138000,email_open,2024-03-02,email",  # 5 exact copy of row 2: removed, counted
    "E4,ann@example.com,dance,2024-03-04,web",  # 6 unknown_event_type
    "E5,no key here,visit,2024-03-05,web",  # 7 invalid_customer_ref
    "E6,ann@example.com,visit,2026-06-01,web",  # 8 timestamp_in_future
    "E3,ann@example.com,visit,not a date,web",  # 9 exact copy of row 3: its failure is row 3's
    "E7,,visit,2024-03-06,web",  # 10 required (no reference)
    "E8,ann@example.com,visit,2024-03-07,app",  # 11 kept
]
EXPECTED = {
    (3, "event_ts", "timestamp_unparseable"),
    (4, "event_id", "duplicate_id"),
    (6, "event_type", "unknown_event_type"),
    (7, "user_ref", "invalid_customer_ref"),
    (8, "event_ts", "timestamp_in_future"),
    (10, "user_ref", "required"),
}


def _world(data_dir, events=EVENTS):
    raw = data_dir / "raw"
    raw.mkdir(exist_ok=True)
    for name, lines in (("orders", ORDERS), ("events", events)):
        with gzip.open(raw / f"{name}.csv.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
    return load_settings(
        data_dir=str(data_dir), sources={"contacts": None, "leads": None, "as_of": "2025-01-01"}
    )


def _ingest(settings, *, lazy: bool = True):
    return ingest_frames(
        read_sources(settings, lazy=lazy),
        sources=settings.sources,
        identity=settings.identity,
        as_of=resolve_as_of(settings),
    )


def test_events_quarantine_names_each_failing_row_once(data_dir) -> None:
    result = _ingest(_world(data_dir))
    q = result.tables["quarantine"]
    events = q[q["source"] == "events"]
    assert set(zip(events["row"], events["column"], events["rule"], strict=True)) == EXPECTED
    report = result.sources["events"]
    assert (report.read, report.duplicates_removed, report.quarantined) == (11, 2, len(EXPECTED))
    assert report.kept == 11 - 2 - len(EXPECTED)
    assert len(result.tables["events"]) == report.kept
    # the identity map names an event by its id, and a row without an id... has one here: E1, E2, E8
    ids = result.frame("identity_map").query("source == 'events'")["source_record_id"]
    assert sorted(ids) == ["E1", "E2", "E8"]


@pytest.mark.parametrize("chunk_rows", [1, 2, 4])
def test_chunks_of_any_size_give_the_whole_table_result(data_dir, monkeypatch, chunk_rows) -> None:
    settings = _world(data_dir)
    whole = _ingest(settings, lazy=False)  # one frame, one chunk
    monkeypatch.setattr(chunked, "CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 96)  # the lazy CSV reader: a few rows per block
    split = _ingest(settings)
    for name in ("quarantine", "events", "identity_map", "customers"):
        pd.testing.assert_frame_equal(split.frame(name), whole.frame(name), check_categorical=False)
    assert split.report()["sources"] == whole.report()["sources"]


def test_a_column_that_never_parses_across_chunks_is_the_wrong_type(data_dir, monkeypatch) -> None:
    events = [EVENTS[0], *(f"E{i},ann@example.com,visit,day {i},web" for i in range(1, 7))]
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 2)
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 96)
    with pytest.raises(
        SourceError, match=r"source 'events' \(.*events\.csv\.gz\): column 'event_ts' cannot be read as "
        r"timestamps: no value parses \(row 1: 'day 1'\)"
    ):
        _ingest(_world(data_dir, events))


def test_events_without_ids_are_named_by_their_row_in_the_source(data_dir, monkeypatch) -> None:
    events = [
        "user_ref,event_type,event_ts,channel",
        "ann@example.com,visit,2024-03-01,web",
        "ann@example.com,dance,2024-03-02,web",  # row 2 rejected: row 3 keeps its own number
        "13800138000,visit,2024-03-03,web",
    ]
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 1)
    result = _ingest(_world(data_dir, events))
    ids = result.frame("identity_map").query("source == 'events'")["source_record_id"]
    assert sorted(ids) == ["1", "3"]

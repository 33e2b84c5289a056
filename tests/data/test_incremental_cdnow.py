"""Row-level incremental ingest on a real orders-only source, through configuration alone
(`configs/datasets/cdnow.yaml`, cursor `order_ts`): CDNOW's purchase file cut at a date is day 1, the
whole file is day 2. Day 1 in full, then day 2 incrementally (the ingest step of `persona refresh`), give
the clean tables a full `persona ingest` of day 2 gives, row for row, and only the customers the new rows
touch are re-ingested. The data's clock is given per day (`PERSONA_SOURCES__AS_OF`), as a scheduled
refresh of a historic file would give it.

The original file is read in place from the shared data folder; the two days are written to tmp. Its
rows are sorted by customer, not time: day 2 keeps day 1's rows where they were and adds the later
purchases at the end, as an order log grows. A file whose earlier rows moved (the later purchases
inserted among them) is ingested in full, saying why: a row's position is its record id here (no order
number), so a moved row is a changed record. Skipped, with the reason, only when the shared data folder
is absent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from configs.settings import load_settings
from features.incremental import ingest_incremental
from features.ingest import clean_dir, load_clean, run_ingest
from features.shared_data import shared_data_dir
from tests.data.test_incremental_ingest import _assert_same, _tables  # the same row-for-row comparison

PROJECT = Path(__file__).resolve().parents[2]
CONFIG = PROJECT / "configs" / "datasets" / "cdnow.yaml"
CDNOW = shared_data_dir() / "cdnow" / "CDNOW_master.txt"
# Day 1 ends here; day 2 adds the last two weeks of the file (854 purchases of 695 customers).
SPLIT = "19980615"
DAY1_AS_OF = "1998-06-16T00:00:00Z"
DAY2_AS_OF = "1998-07-01T00:00:00Z"  # cdnow.yaml's own

pytestmark = pytest.mark.skipif(
    not CDNOW.is_file(), reason=f"CDNOW not found at {CDNOW} (set PERSONA_SHARED_DATA)"
)


def _days(out: Path, *, append: bool) -> tuple[list[str], list[str]]:
    """Write day 1 (purchases up to SPLIT, in the file's order) to `out`; return (day 1's lines, day 2's
    lines): day 1's then the later ones (`append`), or the original file as it is."""
    header, *rows = CDNOW.read_text(encoding="ascii").splitlines(keepends=True)
    early = [row for row in rows if row.split()[1] <= SPLIT]
    late = [row for row in rows if row.split()[1] > SPLIT]
    out.write_text("".join([header, *early]), encoding="ascii")
    return [header, *early], [header, *early, *late] if append else [header, *rows]


def _settings(data_dir: Path, orders: Path, as_of: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """cdnow.yaml with its orders path and clock from the environment (nothing else changed)."""
    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PERSONA_SOURCES__ORDERS__PATH", str(orders))
    monkeypatch.setenv("PERSONA_SOURCES__AS_OF", as_of)
    monkeypatch.setenv("PERSONA_IDENTITY__SALT", "cdnow-test-salt-0123456789")  # real data: not the demo's
    return load_settings(CONFIG)


def _day_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, append: bool):  # type: ignore[no-untyped-def]
    """Day 1 in full (the first refresh's ingest), then day 2 by the refresh's ingest; returns (day 2's
    outcome, its settings, the settings of a full `persona ingest` of day 2 in another data dir, the new
    purchases as [customer, date, cds, dollars] rows)."""
    orders = tmp_path / "orders.txt"
    day1, day2 = _days(orders, append=append)
    settings = _settings(tmp_path / "inc", orders, DAY1_AS_OF, monkeypatch)
    first = ingest_incremental(settings, state=None)
    assert first.full and first.reason == "no earlier incremental run"
    # the cursor's watermark: the last purchase day of day 1, read from CDNOW's yyyymmdd dates
    assert pd.Timestamp(first.state["watermarks"]["orders"]) == pd.Timestamp(SPLIT, tz="UTC")

    orders.write_text("".join(day2), encoding="ascii")
    settings = _settings(tmp_path / "inc", orders, DAY2_AS_OF, monkeypatch)
    outcome = ingest_incremental(settings, state=first.state)
    print(outcome.line())
    full = _settings(tmp_path / "full", orders, DAY2_AS_OF, monkeypatch)
    run_ingest(full)
    new = [row.split() for row in day2[1:] if row.split()[1] > SPLIT]
    return outcome, settings, full, new


def test_day_two_of_cdnow_incrementally_equals_a_full_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome, settings, full, new = _day_two(tmp_path, monkeypatch, append=True)
    assert not outcome.full, outcome.reason  # the clock given anew (a later as_of) is no config change
    assert pd.Timestamp(outcome.state["as_of"]) == pd.Timestamp(DAY2_AS_OF)
    assert outcome.new_rows == {"orders": len(new)} and len(new) > 100
    _assert_same(_tables(settings), _tables(full))
    # only the customers the new purchases touch (CDNOW's number is the customer key), plus at most the
    # one known customer the subset carries so that it is never empty
    touched = len({row[0] for row in new})
    customers = load_clean(full, "customers")
    assert customers is not None and touched < len(customers) / 10
    assert touched <= outcome.customers <= touched + 1, (touched, outcome.customers)
    assert (
        outcome.line()
        == f"ingest: {len(new):,} new rows (orders {len(new):,}) -> {outcome.customers:,} customers re-ingested"
    )

    # the same file again: not read (its size and modification time are those of the last run)
    written = (clean_dir(settings) / "orders.parquet").stat().st_mtime_ns
    again = ingest_incremental(settings, state=outcome.state)
    assert not again.full and again.result is None and again.new_rows == {}
    assert (clean_dir(settings) / "orders.parquet").stat().st_mtime_ns == written


def test_purchases_inserted_among_earlier_rows_mean_a_full_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CDNOW as published (sorted by customer): day 2's purchases sit among day 1's rows and move them.
    Taken in from the watermark as if appended, 167 customers were lost from the clean tables."""
    outcome, settings, full, _ = _day_two(tmp_path, monkeypatch, append=False)
    assert outcome.full
    day1, day2 = _days(tmp_path / "again.txt", append=False)
    # the first data row of day 1 that is no longer where it was (line 0 is the header: row i is line i)
    first = next(i for i, (was, now) in enumerate(zip(day1, day2, strict=False)) if was != now)
    assert outcome.reason.endswith(
        f" earlier rows of orders moved or changed (first: row {first:,}); a source read by cursor must "
        "only grow at the end"
    ), outcome.reason
    _assert_same(_tables(settings), _tables(full))

"""The latest feature snapshot read a chunk of customers at a time (`persona score --all`, `tags fit`) is
the frame read whole: same rows, order, values and dtypes, whatever the chunk size, including the cases
where pandas makes an integer column float (a value missing in an older snapshot, a customer without a
row in a joined table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifacts.latest_snapshot import latest_feature_chunks

TABLES = ("customer_transactions", "customer_engagement", "customer_leads", "customer_profile")
SNAPS = [pd.Timestamp(d, tz="UTC").as_unit("us") for d in ("2025-10-01", "2025-11-01", "2025-12-01")]


def _whole(folder: Path, columns: set[str] | None = None) -> pd.DataFrame:
    """What reading every table whole gives: the latest snapshot of the first, the others left-joined."""
    frames, snapshot = [], None
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            continue
        table = pd.read_parquet(path)
        if columns is not None:
            keep = [c for c in table.columns if c in columns or c in ("customer_id", "event_timestamp")]
            if name != TABLES[0] and len(keep) == 2:
                continue
            table = table[keep]
        if snapshot is None:
            snapshot = table["event_timestamp"].max()
        table = table[table["event_timestamp"] == snapshot].drop(columns=["created"], errors="ignore")
        frames.append(table if not frames else table.drop(columns=["event_timestamp"]))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.merge(other, on="customer_id", how="left")
    return frame.reset_index(drop=True)


def _write(frame: pd.DataFrame, path: Path, *, row_group: int | None) -> None:
    if row_group is None:  # as pandas writes it (pandas metadata, one row group)
        frame.to_parquet(path)
        return
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    with pq.ParquetWriter(path, table.schema) as writer:  # as features build writes it
        for start in range(0, table.num_rows, row_group):
            writer.write_table(table.slice(start, row_group))


@pytest.fixture(params=[None, 4], ids=["pandas-file", "small-row-groups"])
def folder(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    rng = np.random.default_rng(7)
    ids = [f"P{i:03d}" for i in rng.permutation(23)]
    rows = []
    for snap in SNAPS:
        for cid in ids:
            rows.append({"customer_id": cid, "event_timestamp": snap})
    spine = pd.DataFrame(rows)
    n = len(spine)
    tx = spine.assign(
        created=SNAPS[-1],
        recency_days=rng.uniform(0, 400, n).round(1),
        frequency_365d=rng.integers(0, 20, n),
        orders_lifetime=rng.integers(0, 50, n),
        favourite_category=rng.choice(["books", "toys", None], n),
    )
    # an integer column with a gap in an older snapshot only: pandas reads the whole column as float
    tx.loc[3, "orders_lifetime"] = None
    tx["orders_lifetime"] = tx["orders_lifetime"].astype("Int64")
    _write(tx, tmp_path / "customer_transactions.parquet", row_group=request.param)
    # engagement: at the latest snapshot, a few customers have no row (left join leaves gaps)
    eng = spine[~(spine["event_timestamp"].eq(SNAPS[-1]) & spine["customer_id"].isin(ids[5:8]))]
    eng = eng.assign(
        created=SNAPS[-1], visits_90d=rng.integers(0, 9, len(eng)), opens_rate=rng.uniform(0, 1, len(eng))
    )
    _write(eng.reset_index(drop=True), tmp_path / "customer_engagement.parquet", row_group=request.param)
    # profile: every customer, integers without gaps (stay integers)
    prof = spine.assign(tenure_days=rng.integers(1, 900, n), channel=rng.choice(["web", "shop"], n))
    _write(prof, tmp_path / "customer_profile.parquet", row_group=request.param)
    return tmp_path


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 7, 23, 24, 10_000])
def test_chunks_put_together_are_the_whole_frame(folder: Path, chunk_size: int) -> None:
    whole = _whole(folder)
    chunks = list(latest_feature_chunks(folder, TABLES, chunk_size=chunk_size))
    assert all(len(c) <= chunk_size for c in chunks)
    assert len(chunks) == -(-len(whole) // chunk_size)
    together = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(together, whole)
    # an arrow int64 with a gap comes back float; pandas' own metadata keeps its nullable Int64
    pandas_file = b"pandas" in (pq.read_schema(folder / f"{TABLES[0]}.parquet").metadata or {})
    assert whole["orders_lifetime"].dtype == ("Int64" if pandas_file else "float64")
    assert whole["visits_90d"].dtype == "float64"
    assert whole["tenure_days"].dtype == "int64"
    # every chunk has the whole frame's dtypes, even one where every customer has an engagement row
    for chunk in chunks:
        assert chunk.dtypes.equals(whole.dtypes)


def test_only_the_columns_asked_for(folder: Path) -> None:
    wanted = {"recency_days", "visits_90d"}
    whole = _whole(folder, wanted)
    together = pd.concat(list(latest_feature_chunks(folder, TABLES, chunk_size=4, columns=wanted)))
    pd.testing.assert_frame_equal(together.reset_index(drop=True), whole)
    assert list(whole.columns) == ["customer_id", "event_timestamp", "recency_days", "visits_90d"]


def test_no_rows_gives_one_empty_chunk_with_the_columns(tmp_path: Path) -> None:
    empty = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype=object),
            "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            "recency_days": pd.Series([], dtype="float64"),
        }
    )
    empty.to_parquet(tmp_path / "customer_transactions.parquet")
    chunks = list(latest_feature_chunks(tmp_path, TABLES, chunk_size=3))
    assert len(chunks) == 1 and chunks[0].empty
    assert list(chunks[0].columns) == ["customer_id", "event_timestamp", "recency_days"]


def test_tag_counts_added_chunk_by_chunk_rank_as_pandas_ranks_the_whole() -> None:
    from serving.tagging import distribution_text, tag_value_counts

    rng = np.random.default_rng(11)
    # many ties: four values of equal counts, in a shuffled order, and gaps (unset)
    values = np.array(["2", "4", "5", "3"] * 50 + [None] * 30 + ["1"] * 70, dtype=object)
    tags = pd.DataFrame(
        {"customer_id": [f"P{i}" for i in range(len(values))], "rfm_r": rng.permutation(values)}
    )
    expected = tags["rfm_r"].astype(object).where(tags["rfm_r"].notna(), "unset").value_counts()
    counts: dict = {}
    for start in range(0, len(tags), 33):
        tag_value_counts(tags.iloc[start : start + 33], into=counts)
    lines = distribution_text(counts, len(tags)).splitlines()
    assert lines[0] == "rfm_r"
    assert [line.split()[0] for line in lines[1:]] == [str(v) for v in expected.index]
    assert [int(line.split()[1].replace(",", "")) for line in lines[1:]] == expected.tolist()

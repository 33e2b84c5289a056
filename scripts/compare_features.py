"""Compare two feature folders (`persona features build` outputs) table by table: the Parquet schema,
the rows as multisets (DuckDB `EXCEPT ALL` both ways, out of core) and their order (row i of one is
row i of the other). `created` (the build's own time stamp) is left out of the row comparison.

    .venv/bin/python scripts/compare_features.py data/features_old data/features
Exit 1 on a difference, naming the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

IGNORED = ("created",)


def _columns(path: Path) -> str:
    return ", ".join(f'"{n}"' for n in pq.read_schema(path).names if n not in IGNORED)


def _differences(con: duckdb.DuckDBPyConnection, a: Path, b: Path) -> int:
    """Rows of `a` not in `b` plus rows of `b` not in `a`, duplicates counted."""
    cols = _columns(a)
    one_way = "SELECT count(*) FROM (SELECT {c} FROM read_parquet('{}') EXCEPT ALL SELECT {c} FROM read_parquet('{}'))"
    return sum(con.execute(one_way.format(x, y, c=cols)).fetchone()[0] for x, y in ((a, b), (b, a)))


def _out_of_order(con: duckdb.DuckDBPyConnection, a: Path, b: Path) -> int:
    """Positions where the rows differ (the tables have as many rows)."""
    names = [n for n in pq.read_schema(a).names if n not in IGNORED]
    differ = " OR ".join(f'x."{c}" IS DISTINCT FROM y."{c}"' for c in names)
    return con.execute(
        f"SELECT count(*) FROM read_parquet('{a}', file_row_number = true) x "
        f"JOIN read_parquet('{b}', file_row_number = true) y USING (file_row_number) WHERE {differ}"
    ).fetchone()[0]


def main(old: Path, new: Path) -> int:
    names = sorted(p.name for p in old.glob("*.parquet"))
    if names != sorted(p.name for p in new.glob("*.parquet")):
        print(f"tables differ: {names} vs {sorted(p.name for p in new.glob('*.parquet'))}")
        return 1
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    bad = 0
    for name in names:
        a, b = pq.read_schema(old / name), pq.read_schema(new / name)
        if a.remove_metadata() != b.remove_metadata():
            print(f"{name}: schema differs\n{a}\n---\n{b}")
            bad = 1
            continue
        rows = pq.read_metadata(old / name).num_rows
        if rows != pq.read_metadata(new / name).num_rows or _differences(con, old / name, new / name):
            print(f"{name}: rows differ")
            bad = 1
            continue
        if moved := _out_of_order(con, old / name, new / name):
            print(f"{name}: same rows, {moved:,} in another order")
            bad = 1
            continue
        print(f"{name}: {rows:,} rows identical, in the same order")
    return bad


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

"""Compare two `clean/` folders table by table (schema, and rows as multisets: every row of one is a row
of the other, as often), and the reports.

    .venv/bin/python scripts/compare_clean.py data/w20k/clean_old data/w20k/clean
Exit 1 on the first difference, naming the table and the first differing row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def _differences(con, a: Path, b: Path) -> int:
    """Rows of `a` not in `b` plus rows of `b` not in `a`, duplicates counted (DuckDB: out of core)."""
    one_way = (
        "SELECT count(*) FROM (SELECT * FROM read_parquet('{}') EXCEPT ALL SELECT * FROM read_parquet('{}'))"
    )
    return sum(con.execute(one_way.format(x, y)).fetchone()[0] for x, y in ((a, b), (b, a)))


def main(old: Path, new: Path) -> int:
    names = sorted(p.name for p in old.glob("*.parquet"))
    if names != sorted(p.name for p in new.glob("*.parquet")):
        print(f"tables differ: {names} vs {sorted(p.name for p in new.glob('*.parquet'))}")
        return 1
    con = duckdb.connect()
    bad = 0
    for name in names:
        a, b = pq.read_schema(old / name), pq.read_schema(new / name)
        if a.remove_metadata() != b.remove_metadata():
            print(f"{name}: schema differs\n{a}\n---\n{b}")
            bad = 1
        rows = pq.read_metadata(old / name).num_rows
        if rows != pq.read_metadata(new / name).num_rows or _differences(con, old / name, new / name):
            print(f"{name}: rows differ")
            bad = 1
            continue
        print(f"{name}: {rows:,} rows identical")
    ra = json.loads((old / "ingest_report.json").read_text())
    rb = json.loads((new / "ingest_report.json").read_text())
    for r in (ra, rb):
        r.pop("created", None)
    if ra != rb:
        print(f"report differs:\n{json.dumps(ra, indent=1)}\n---\n{json.dumps(rb, indent=1)}")
        bad = 1
    else:
        print("ingest_report.json identical (but 'created')")
    return bad


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

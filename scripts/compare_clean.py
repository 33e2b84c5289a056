"""Compare two `clean/` folders table by table (schema; rows as multisets: every row of one is a row of
the other, as often; and with `--order`, row i of one is row i of the other), and the reports.

    .venv/bin/python scripts/compare_clean.py data/w20k/clean_old data/w20k/clean [--order]
Exit 1 on a difference, naming the table. The reports' `location`s may differ by the data folder only
(the same world ingested into two folders).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def _differences(con, a: Path, b: Path, columns: list[str]) -> int:
    """Rows of `a` not in `b` plus rows of `b` not in `a`, duplicates counted (DuckDB: out of core)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    one_way = "SELECT count(*) FROM (SELECT {c} FROM read_parquet('{}') EXCEPT ALL SELECT {c} FROM read_parquet('{}'))"
    return sum(con.execute(one_way.format(x, y, c=cols)).fetchone()[0] for x, y in ((a, b), (b, a)))


def _out_of_order(con, a: Path, b: Path, columns: list[str]) -> int:
    """Positions where the rows differ (the tables have as many rows)."""
    differ = " OR ".join(f'x."{c}" IS DISTINCT FROM y."{c}"' for c in columns)
    return con.execute(
        f"SELECT count(*) FROM read_parquet('{a}', file_row_number = true) x "
        f"JOIN read_parquet('{b}', file_row_number = true) y USING (file_row_number) WHERE {differ}"
    ).fetchone()[0]


def compare_tables(old: Path, new: Path, *, order: bool = False, ignore: tuple[str, ...] = ()) -> int:
    """1 if a Parquet table of `old` and `new` differs (schema, rows, and with `order` their order),
    leaving out the `ignore` columns (e.g. a build's own time stamp); each table's verdict printed."""
    names = sorted(p.name for p in old.glob("*.parquet"))
    if not names:  # two missing or empty folders are not "identical": nothing was compared
        print(f"no Parquet tables in {old}")
        return 1
    if names != sorted(p.name for p in new.glob("*.parquet")):
        print(f"tables differ: {names} vs {sorted(p.name for p in new.glob('*.parquet'))}")
        return 1
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")  # the counts do not depend on it; memory does
    bad = 0
    for name in names:
        a, b = pq.read_schema(old / name), pq.read_schema(new / name)
        if a.remove_metadata() != b.remove_metadata():
            print(f"{name}: schema differs\n{a}\n---\n{b}")
            bad = 1
            continue
        columns = [c for c in a.names if c not in ignore]
        rows = pq.read_metadata(old / name).num_rows
        if rows != pq.read_metadata(new / name).num_rows or _differences(
            con, old / name, new / name, columns
        ):
            print(f"{name}: rows differ")
            bad = 1
            continue
        if order and (moved := _out_of_order(con, old / name, new / name, columns)):
            print(f"{name}: same rows, {moved:,} in another order")
            bad = 1
            continue
        print(f"{name}: {rows:,} rows identical{' in the same order' if order else ''}")
    return bad


def _report(folder: Path) -> dict:
    report = json.loads((folder / "ingest_report.json").read_text())
    report.pop("created", None)
    data_dir = str(folder.resolve().parent)
    for source in report["sources"].values():
        source["location"] = source["location"].replace(data_dir, "{data_dir}")
    return report


def main(old: Path, new: Path, *, order: bool = False) -> int:
    bad = compare_tables(old, new, order=order)
    ra, rb = _report(old), _report(new)
    if ra != rb:
        print(f"report differs:\n{json.dumps(ra, indent=1)}\n---\n{json.dumps(rb, indent=1)}")
        bad = 1
    else:
        print("ingest_report.json identical (but 'created' and the data folder)")
    return bad


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--order"]
    sys.exit(main(Path(args[0]), Path(args[1]), order="--order" in sys.argv))

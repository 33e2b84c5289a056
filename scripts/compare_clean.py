"""Compare two `clean/` folders table by table, row for row (sorted on every column), and the reports.

    .venv/bin/python scripts/compare_clean.py data/w20k/clean_old data/w20k/clean
Exit 1 on the first difference, naming the table and the first differing row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
    order = keys.sort_values(list(frame.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def main(old: Path, new: Path) -> int:
    names = sorted(p.name for p in old.glob("*.parquet"))
    if names != sorted(p.name for p in new.glob("*.parquet")):
        print(f"tables differ: {names} vs {sorted(p.name for p in new.glob('*.parquet'))}")
        return 1
    bad = 0
    for name in names:
        a, b = pq.read_schema(old / name), pq.read_schema(new / name)
        if a.remove_metadata() != b.remove_metadata():
            print(f"{name}: schema differs\n{a}\n---\n{b}")
            bad = 1
        fa, fb = pd.read_parquet(old / name), pd.read_parquet(new / name)
        same_order = fa.equals(fb)
        if "sources" in fa:  # a list column: compare as text
            fa["sources"], fb["sources"] = (
                fa["sources"].map(list).astype(str),
                fb["sources"].map(list).astype(str),
            )
        try:
            pd.testing.assert_frame_equal(_sorted(fa), _sorted(fb), check_exact=True)
        except AssertionError as exc:
            print(f"{name}: rows differ: {str(exc)[:800]}")
            bad = 1
            continue
        print(f"{name}: {len(fa):,} rows identical{'' if same_order else ' (as sets; row order differs)'}")
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

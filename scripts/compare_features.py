"""Compare two feature folders (`persona features build` outputs) table by table: the Parquet schema,
the rows as multisets (DuckDB `EXCEPT ALL` both ways, out of core) and their order (row i of one is
row i of the other). `created` (the build's own time stamp) is left out of the row comparison.

    .venv/bin/python scripts/compare_features.py data/features_old data/features
Exit 1 on a difference, naming the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from compare_clean import compare_tables

if __name__ == "__main__":
    sys.exit(compare_tables(Path(sys.argv[1]), Path(sys.argv[2]), order=True, ignore=("created",)))

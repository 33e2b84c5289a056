"""One parquet source per feature table written by `persona features build`.

The folder comes from PERSONA_FEAST_SOURCE_DIR, else $PERSONA_DATA_DIR/features, else ../data/features.
`features/feast_io.py` points every source at `settings.data_dir` when it applies the repo, so this
default only matters for people running the `feast` CLI by hand.
"""

import os
import sys
from pathlib import Path

# `feast plan` / `feast apply` in this folder read feature_store.yaml, whose paths need PERSONA_DATA_DIR
# (Feast expands ${VARS}; an unset one would become a folder literally named "${PERSONA_DATA_DIR}").
# Feast imports this file before it touches the registry, so stop here with what to do. Persona itself
# (features.feast_io) builds its own configuration from settings and needs no variable.
if "features.feast_io" not in sys.modules and not Path(os.environ.get("PERSONA_DATA_DIR", "")).is_absolute():
    sys.exit(
        "feature_repo: export PERSONA_DATA_DIR as an absolute path before running feast here, e.g.\n"
        "  export PERSONA_DATA_DIR=$(cd .. && pwd)/data\n"
        "(`persona features apply` and `persona features materialize` need no export)"
    )

from feast import FileSource
from feast.data_format import ParquetFormat

_DATA_DIR = Path(os.environ.get("PERSONA_DATA_DIR") or Path(__file__).resolve().parent.parent / "data")
SOURCE_DIR = Path(os.environ.get("PERSONA_FEAST_SOURCE_DIR") or _DATA_DIR / "features").resolve()


def _source(table: str) -> FileSource:
    return FileSource(
        name=f"{table}_source",
        path=str(SOURCE_DIR / f"{table}.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        # Two builds of the same snapshot: the later build wins.
        created_timestamp_column="created",
        description=f"Point-in-time feature table {table} (one row per customer and snapshot).",
    )


customer_transactions_source = _source("customer_transactions")
customer_engagement_source = _source("customer_engagement")
customer_leads_source = _source("customer_leads")
customer_profile_source = _source("customer_profile")

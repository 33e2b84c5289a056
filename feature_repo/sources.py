"""One parquet source per feature table written by `persona features build`.

The folder comes from PERSONA_FEAST_SOURCE_DIR, else $PERSONA_DATA_DIR/features, else ../data/features.
`features/feast_io.py` points every source at `settings.data_dir` when it applies the repo, so this
default only matters for people running the `feast` CLI by hand.
"""

import os
from pathlib import Path

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

"""Erasing one customer's derived rows from Persona's files: the feature tables (Feast's sources), the
recommender's purchase histories (`training.recommend.history`: the served recommender scores from them,
the registered model holds no customer) and the clean event-level tables. Each file is rewritten without the customer's rows (same schema) and
replaces the old one atomically; a file holding none of them is left untouched."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from configs.settings import Settings

CLEAN_EVENT_TABLES = ("orders", "events", "leads")  # customers and identity_map stay: see forget


def drop_rows(path: Path, customer_ids: Iterable[str]) -> int:
    """Rewrite the parquet file at `path` without the rows of `customer_ids`; returns rows removed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        return 0
    table = pq.read_table(path)
    if "customer_id" not in table.column_names:
        return 0
    hit = pc.is_in(table["customer_id"].cast(pa.string()), value_set=pa.array(sorted(set(customer_ids))))
    removed = int(pc.sum(hit).as_py() or 0)
    if removed == 0:
        return 0
    kept = table.filter(pc.invert(hit))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(kept, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return removed


def erase_feature_rows(settings: Settings, customer_ids: Iterable[str]) -> dict[str, int]:
    """Remove the customers from every feature table (`feast.source_dir`): table -> rows removed."""
    from features.feast_io import source_dir

    ids = list(customer_ids)
    folder = source_dir(settings)
    return {path.stem: drop_rows(path, ids) for path in sorted(folder.glob("*.parquet"))}


def erase_clean_rows(settings: Settings, customer_ids: Iterable[str]) -> dict[str, int]:
    """Remove the customers' orders, events and leads from `clean/`: table -> rows removed."""
    from features.ingest import clean_dir

    ids = list(customer_ids)
    folder = clean_dir(settings)
    return {name: drop_rows(folder / f"{name}.parquet", ids) for name in CLEAN_EVENT_TABLES}


def erase_history_rows(settings: Settings, customer_ids: Iterable[str]) -> int:
    """Remove the customers' purchases from the recommender's history table; returns rows removed."""
    return drop_rows(settings.path(settings.training.recommend.history), customer_ids)


def erase_staged_rows(settings: Settings) -> int:
    """Remove the incremental ingest's staged copy of the source rows (`features.incremental`): it holds
    every person's rows as read, the forgotten one's too, under hashed keys that cannot be matched to one
    person without the others. The next refresh sees it missing and rebuilds it with a full ingest.
    Returns the staged rows removed."""
    import shutil

    import pyarrow.parquet as pq

    from features.incremental import stage_dir

    folder = stage_dir(settings)
    if not folder.is_dir():
        return 0
    rows = sum(pq.read_metadata(path).num_rows for path in folder.glob("*.parquet"))
    shutil.rmtree(folder)
    return rows

"""The recommender's per-customer purchase histories, kept apart from the registered model.

One row per purchase (`customer_id`, `item`, `day`) of the customers the recommender may score, up to the
data's `as_of`. Training writes the table (`write_history`) with every recommender it trains; serving attaches it to the
champion at load (`attach_history`); erasure and consent withdrawal rewrite it without the customer
(`features.erasure`), so an erased customer's history leaves every place Persona keeps it. The model in
MLflow holds item-level parts only (`models.recommend.Recommender.without_history`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import RegistryError
from models.recommend import Purchases, Recommender

if TYPE_CHECKING:
    from configs.settings import Settings

AS_OF_KEY = b"persona.as_of_day"  # parquet schema metadata: the data's clock the table is as of


def history_path(settings: Settings) -> Path:
    return settings.path(settings.training.recommend.history)


def write_history(settings: Settings, purchases: Purchases, *, as_of_day: float) -> Path:
    """Write the purchases before `as_of_day` (atomically: a reader sees the old table or the new one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = history_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(purchases.before(as_of_day).to_frame(), preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), AS_OF_KEY: repr(as_of_day).encode()}
    )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_history(settings: Settings) -> tuple[Purchases, float]:
    """The histories and the day they are as of; RegistryError naming the file when it is missing."""
    import pyarrow.parquet as pq

    path = history_path(settings)
    if not path.is_file():
        raise RegistryError(
            f"recommender histories not found: {path} (training.recommend.history)",
            hint="persona train recommend writes them",
        )
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(AS_OF_KEY)
    if raw is None:
        raise RegistryError(f"{path}: no '{AS_OF_KEY.decode()}' in the parquet metadata")
    return Purchases.from_stored(table.to_pandas()), float(raw.decode())


def attach_history(settings: Settings, model: Recommender) -> Recommender:
    """The registered recommender with the current histories (what serving scores from)."""
    purchases, as_of_day = read_history(settings)
    return model.with_history(purchases, as_of_day=as_of_day)

"""The quarantine: rows that failed a rule, with the reason, never silently dropped.

One entry per (row, column, rule): `source`, `row` (1-based data row in the source, header excluded),
`column` (Persona's name), `rule`, `value` (the offending raw value as text; raw PII is redacted so the
quarantine, which lives next to the clean tables, holds none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

QUARANTINE_COLUMNS = ["source", "row", "column", "rule", "value"]
# Columns whose values are raw PII: quarantine shows that a value was there, not what it was.
PII_COLUMNS = frozenset({"email", "phone", "customer_ref", "user_ref", "full_name"})
REDACTED = "<redacted>"


def _values_as_text(values: pd.Series, column: str) -> np.ndarray:
    if column in PII_COLUMNS:
        return np.where(values.notna().to_numpy(), REDACTED, "")
    text = values.astype("string").fillna("")
    return text.to_numpy(dtype=object)


@dataclass
class Quarantine:
    """Collects rejected rows of one run; `frame()` is the table written to `clean/quarantine.parquet`."""

    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, source: str, rows: pd.Index, *, column: str, rule: str, values: pd.Series) -> None:
        """Record `rows` (0-based positions of the source frame) failing `rule` on `column`.

        `values` holds the raw values of those rows (aligned to `rows`).
        """
        if len(rows) == 0:
            return
        self.parts.append(
            pd.DataFrame(
                {
                    "source": source,
                    "row": np.asarray(rows, dtype="int64") + 1,
                    "column": column,
                    "rule": rule,
                    "value": _values_as_text(values, column),
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        """All entries, ordered by source, row, column, rule."""
        if not self.parts:
            return pd.DataFrame(
                {
                    "source": pd.Series(dtype=object),
                    "row": pd.Series(dtype="int64"),
                    "column": pd.Series(dtype=object),
                    "rule": pd.Series(dtype=object),
                    "value": pd.Series(dtype=object),
                }
            )
        out = pd.concat(self.parts, ignore_index=True)
        for name in ("source", "column", "rule", "value"):
            out[name] = out[name].astype(object)
        return (
            out.drop_duplicates(["source", "row", "column", "rule"])
            .sort_values(["source", "row", "column", "rule"], kind="stable")
            .reset_index(drop=True)
        )

    def rows(self, source: str) -> np.ndarray:
        """0-based rows of `source` with at least one entry (sorted, unique)."""
        picked = [p["row"].to_numpy() for p in self.parts if len(p) and p["source"].iat[0] == source]
        if not picked:
            return np.array([], dtype="int64")
        return np.unique(np.concatenate(picked)) - 1

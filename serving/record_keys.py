"""The business's own keys of each customer, read from the identity map (`clean/identity_map.parquet`).

Two questions, one table:
- which CRM record a customer's tags go to (`records_for`): its CRM contact ids where the contacts
  source knows the customer, else the key of the source named by `crm.record_key` (e.g. the orders'
  customer number), else none: such a customer is reported, never written to an empty id;
- which customer an id given by a CRM user means (`customer_for`): a Persona id, a CRM contact id, a
  customer number or a lead id.

Keys are business ids only (contact ids, customer numbers, lead ids): ingest never stores an email or a
phone as a key (`features.ingest.source_keys`), so nothing here is personal data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from core.errors import CrmError

# Sources whose keys a user may name a customer by, in the order an ambiguous key is resolved.
LOOKUP_SOURCES = ("contacts", "orders", "leads")
PERSONA_ID = re.compile(r"^P[0-9a-f]{12}$")


class RecordKeys:
    """Customer <-> business keys from one identity map file (re-read when `persona ingest` rewrites it).

    Without an identity map (a CRM keyed by Persona's own customer ids) every customer is its own record.
    """

    def __init__(self, identity_map: Path | None, *, record_key: str = "orders") -> None:
        self.path = identity_map
        self.record_key = record_key
        self._keys: dict[str, dict[str, list[str]]] | None = None  # source -> customer -> keys
        self._customer_of: dict[str, str] | None = None
        self._loaded_mtime: float | None = None

    @property
    def has_map(self) -> bool:
        return self.path is not None and self.path.is_file()

    def _load(self) -> dict[str, dict[str, list[str]]]:
        mtime = self.path.stat().st_mtime if self.has_map and self.path is not None else None
        if self._keys is not None and mtime == self._loaded_mtime:
            return self._keys

        keys: dict[str, dict[str, list[str]]] = {}
        if self.has_map:
            sources = sorted({*LOOKUP_SOURCES, self.record_key})
            try:
                frame = pd.read_parquet(
                    self.path,
                    columns=["source", "source_key", "customer_id"],
                    filters=[("source", "in", sources), ("source_key", "!=", "")],
                )
            except Exception as exc:
                raise CrmError(
                    f"{self.path}: cannot read the identity map's source keys ({type(exc).__name__}: {exc})",
                    hint="run `persona ingest` again to rebuild it",
                ) from None
            frame = frame.dropna(subset=["source_key"]).astype(str).drop_duplicates()
            for (source, customer_id), group in frame.groupby(["source", "customer_id"], sort=False):
                keys.setdefault(str(source), {})[str(customer_id)] = sorted(group["source_key"])
        self._keys, self._customer_of, self._loaded_mtime = keys, None, mtime
        return keys

    def preload(self) -> RecordKeys:
        """Read the map and build the lookup now (the service does it at start-up, not on a request)."""
        if self.has_map:
            self._load()
            self.customer_for(["-"])  # builds the key -> customer index
        return self

    def records_for(self, customer_ids: Iterable[str]) -> dict[str, list[str]]:
        """customer_id -> the ids of its CRM records: contact ids, else `record_key` keys, else [].
        Without an identity map: [customer_id]."""
        if not self.has_map:
            return {c: [c] for c in customer_ids}
        keys = self._load()
        contacts = keys.get("contacts", {})
        fallback = keys.get(self.record_key, {}) if self.record_key != "contacts" else {}
        return {c: contacts.get(c) or fallback.get(c, []) for c in customer_ids}

    def customer_for(self, ids: Iterable[str]) -> dict[str, str]:
        """Given id -> Persona customer id, for every id that is a Persona id or a known business key
        (contact id first, then customer number, then lead id when one text is several). Unknown ids are
        left out."""
        ids = list(ids)
        out = {i: i for i in ids if PERSONA_ID.match(i)}
        rest = [i for i in ids if i not in out]
        if rest and self.has_map:
            keys = self._load()  # a new identity map resets the index below
            if self._customer_of is None:
                customer_of: dict[str, str] = {}
                for source in LOOKUP_SOURCES:
                    for customer_id, names in keys.get(source, {}).items():
                        for name in names:
                            customer_of.setdefault(name, customer_id)
                self._customer_of = customer_of
            out.update({i: self._customer_of[i] for i in rest if i in self._customer_of})
        return out

"""Identity resolution: one `customer_id` per person across CRM contacts, orders, events and leads.

Deterministic rules: two records are the same person when they share a CRM contact id, an exact
normalised email or an exact normalised (E.164) phone; "same person" is transitive (connected
components of the graph whose nodes are these keys and whose edges are the records holding two or
more of them). Vectorised: keys are factorised per kind and the components come from
`scipy.sparse.csgraph.connected_components`.

A person's `customer_id` is "P" + the first 12 hex characters of SHA-256(salt, canonical key), the
canonical key being the smallest key of the cluster (contact ids before emails before phones), so
re-running on the same data gives the same ids and nothing about the person can be read from the id.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

KEY_KINDS = ("contact_id", "email", "phone")
# match_rule by the kind of key a record shares with another record of its cluster (first that applies).
RULES = {"contact_id": "contact_id", "email": "email_exact", "phone": "phone_e164"}
NEW = "new"


def customer_id_for(canonical_keys: pd.Series | list[str], *, salt: str) -> np.ndarray:
    """Customer ids: "P" + 12 hex chars of SHA-256 over salt and each canonical key (`contact_id:C0000001`)."""
    prefix = salt.encode("utf-8") + b"\x1f"
    return np.array(
        ["P" + hashlib.sha256(prefix + key.encode("utf-8")).hexdigest()[:12] for key in canonical_keys],
        dtype=object,
    )


def resolve(records: pd.DataFrame, *, salt: str) -> pd.DataFrame:
    """Cluster `records` into persons.

    `records` has one row per source record, in priority order (the first record of a cluster is its
    anchor, rule `new`), with columns `contact_id`, `email`, `phone` (normalised keys, null when absent;
    at least one per row). Returns a frame aligned to `records` with `customer_id` and `match_rule`:
    the kind of key the record shares with another record of its person (`contact_id`, `email_exact`,
    `phone_e164`), or `new` for the anchor and for a person seen once.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(records)
    node_of: dict[str, np.ndarray] = {}  # per kind: node id per record (-1 = no key)
    labels: list[np.ndarray] = []  # node id -> canonical text, kind by kind
    offset = 0
    for kind in KEY_KINDS:
        values = records[kind] if kind in records else pd.Series(pd.NA, index=records.index, dtype="string")
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        # Number the keys in sorted order (sorting the few distinct keys, not the millions of records).
        order = np.argsort(np.asarray(uniques, dtype=object), kind="stable")
        rank = np.empty(len(uniques), dtype=np.int64)
        rank[order] = np.arange(len(uniques))
        node_of[kind] = np.where(codes >= 0, rank[np.maximum(codes, 0)] + offset, -1) if len(rank) else codes
        labels.append(np.asarray(uniques, dtype=object)[order])
        offset += len(uniques)
    if n and (np.stack([node_of[k] for k in KEY_KINDS]) < 0).all(axis=0).any():
        raise ValueError("every record needs at least one identity key (contact_id, email or phone)")

    # Edges: each record ties its first key to each other key it holds.
    stacked = np.stack([node_of[k] for k in KEY_KINDS], axis=1)  # (n, 3), -1 where absent
    first = np.where(
        stacked[:, 0] >= 0, stacked[:, 0], np.where(stacked[:, 1] >= 0, stacked[:, 1], stacked[:, 2])
    )
    src = np.concatenate([first[stacked[:, j] >= 0] for j in range(3)])
    dst = np.concatenate([stacked[stacked[:, j] >= 0, j] for j in range(3)])
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)

    # Canonical key per component: the smallest node id, i.e. contact ids first, then emails, then
    # phones, each sorted, so the choice does not depend on row order.
    node_label = np.concatenate(labels) if labels else np.array([], dtype=object)
    node_kind = np.repeat(np.array(KEY_KINDS, dtype=object), [len(x) for x in labels])
    smallest = pd.Series(np.arange(offset)).groupby(component).min()
    canonical = [f"{node_kind[i]}:{node_label[i]}" for i in smallest.to_numpy()]
    person_of_component = pd.Series(customer_id_for(canonical, salt=salt), index=smallest.index)
    if person_of_component.duplicated().any():
        raise ValueError("customer id hash collision: change identity.salt")
    record_component = component[first]
    # Categorical: millions of records share a few hundred thousand ids.
    person_codes = pd.Series(np.arange(len(smallest)), index=smallest.index)
    customer_id = pd.Categorical.from_codes(
        person_codes.reindex(record_component).to_numpy(), categories=person_of_component.to_numpy()
    )

    # Rule: the first kind of key this record shares with another record.
    uses = np.bincount(stacked[stacked >= 0], minlength=offset)
    rule = np.full(n, NEW, dtype=object)
    decided = np.zeros(n, dtype=bool)
    for j, kind in enumerate(KEY_KINDS):
        node = stacked[:, j]
        shared = (node >= 0) & ~decided
        shared[shared] = uses[node[shared]] >= 2
        rule[shared] = RULES[kind]
        decided |= shared
    anchor = ~pd.Series(record_component).duplicated().to_numpy()
    rule[anchor] = NEW
    match_rule = pd.Categorical(rule, categories=[NEW, *RULES.values()])
    return pd.DataFrame({"customer_id": customer_id, "match_rule": match_rule}, index=records.index)


def pairwise_precision_recall(predicted: pd.Series, truth: pd.Series) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering: over all pairs of records, precision = share of
    pairs put together that truly are one person; recall = share of true pairs that were put together.

    `predicted` and `truth` are cluster labels aligned record by record. With no pairs on a side the
    value is 1.0 (nothing claimed, nothing missed).
    """
    frame = pd.DataFrame({"p": np.asarray(predicted), "t": np.asarray(truth)})

    def pairs(sizes: pd.Series) -> float:
        s = sizes.to_numpy(dtype="float64")
        return float((s * (s - 1) / 2).sum())

    together = pairs(frame.groupby(["p", "t"]).size())
    predicted_pairs = pairs(frame.groupby("p").size())
    true_pairs = pairs(frame.groupby("t").size())
    precision = together / predicted_pairs if predicted_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    return precision, recall

"""Identity resolution: one `customer_id` per person across CRM contacts, orders, events and leads.

Deterministic rules: two records are the same person when they share a CRM contact id, an exact
normalised email or an exact normalised (E.164) phone; "same person" is transitive (connected
components of the graph whose nodes are these keys and whose edges are the records holding two or
more of them). The components come from iterative minimum-label propagation written once in Ibis, so
they run on the configured engine (DuckDB out of core, or Spark: features/engine.py); only the result,
one row per record, comes back as pandas.

A person's `customer_id` is "P" + the first 12 hex characters of SHA-256(salt, canonical key), the
canonical key being the smallest key of the cluster (contact ids before emails before phones), so
re-running on the same data gives the same ids and nothing about the person can be read from the id.
"""

from __future__ import annotations

import hashlib

import ibis
import numpy as np
import pandas as pd

from features.engine import Engine, open_engine

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


def resolve(records: pd.DataFrame, *, salt: str, engine: Engine | None = None) -> pd.DataFrame:
    """Cluster `records` into persons (on `engine`; an embedded DuckDB when None).

    `records` has one row per source record, in priority order (the first record of a cluster is its
    anchor, rule `new`), with columns `contact_id`, `email`, `phone` (normalised keys, null when absent;
    at least one per row). Returns a frame aligned to `records` with `customer_id` and `match_rule`:
    the kind of key the record shares with another record of its person (`contact_id`, `email_exact`,
    `phone_e164`), or `new` for the anchor and for a person seen once.
    """
    if engine is None:
        with open_engine() as own:
            return resolve(records, salt=salt, engine=own)
    n = len(records)
    keys = pd.DataFrame(
        {
            kind: (records[kind] if kind in records else pd.Series(pd.NA, index=records.index))
            .astype("string")
            .to_numpy()
            for kind in KEY_KINDS
        }
    )
    if n and keys.isna().all(axis=1).any():
        raise ValueError("every record needs at least one identity key (contact_id, email or phone)")
    keys.insert(0, "rec", np.arange(n, dtype="int64"))
    found = engine.execute(components(engine.table(keys), engine=engine)).sort_values("rec")
    if len(found) != n:  # every record has a key, so every record is in a component
        raise ValueError(f"identity resolution lost records ({len(found)} of {n} resolved)")

    canonical = found["canonical"].to_numpy(dtype=object)
    # components in the order of their canonical node (contact ids, then emails, then phones, each
    # sorted): the same category order whatever engine found them
    nodes = np.sort(pd.unique(canonical)) if n else np.array([], dtype=object)
    texts = [f"{KEY_KINDS[int(node[0])]}:{node[2:]}" for node in nodes]
    ids = customer_id_for(texts, salt=salt)
    if len(set(ids)) != len(ids):
        raise ValueError("customer id hash collision: change identity.salt")
    customer_id = pd.Categorical.from_codes(np.searchsorted(nodes, canonical), categories=ids)

    shared = found["shared_kind"].to_numpy(dtype="float64")
    rule = np.full(n, NEW, dtype=object)
    for j, kind in enumerate(KEY_KINDS):
        rule[shared == j] = RULES[kind]
    rule[found["is_anchor"].to_numpy(dtype=bool)] = NEW
    match_rule = pd.Categorical(rule, categories=[NEW, *RULES.values()])
    return pd.DataFrame({"customer_id": customer_id, "match_rule": match_rule}, index=records.index)


def components(records: ibis.Table, *, engine: Engine, max_rounds: int = 1_000) -> ibis.Table:
    """Connected components of the key graph by minimum-label propagation (any Ibis engine).

    `records`: `rec` (priority order) and the key columns `KEY_KINDS` (null when absent). A node is a
    key tagged with its kind's rank (`0\x1f<contact id>`, `1\x1f<email>`, `2\x1f<phone>`), so the
    smallest node of a component is its canonical key: contact ids before emails before phones.
    Each round a node takes the smallest label among itself and its neighbours, and then the label of
    its label (pointer jumping: rounds grow with the log of a component's diameter, not the diameter).
    Returns per record: `rec`, `canonical` (its component's smallest node), `shared_kind` (rank of the
    first key kind it shares with another record, null if none), `is_anchor` (first record of its
    component).
    """
    tagged = records.select(
        "rec",
        **{
            f"k{j}": ibis.literal(f"{j}\x1f") + records[kind].cast("string")
            for j, kind in enumerate(KEY_KINDS)
        },
    )
    first = tagged.select("rec", first=ibis.coalesce(tagged.k0, tagged.k1, tagged.k2))
    held = ibis.union(
        *(tagged.select("rec", node=tagged[f"k{j}"], kind=ibis.literal(j)) for j in range(len(KEY_KINDS)))
    )
    held = engine.materialize(held.filter(held.node.notnull()))
    # edges: each record ties its first key to each other key it holds, in both directions
    tie = held.join(first, "rec")
    tie = tie.filter(tie.node != tie.first).select(a="first", b="node")
    edges = engine.materialize(ibis.union(tie, tie.select(a="b", b="a"), distinct=True))
    nodes = held.select("node").distinct()
    labels = engine.materialize(nodes.select("node", label=nodes.node))
    for _ in range(max_rounds):
        step = edges.join(labels, edges.a == labels.node)
        best = step.group_by(bnode=step.b).aggregate(m=step.label.min())
        merged = labels.left_join(best, labels.node == best.bnode)
        lowered = engine.materialize(
            merged.select(
                node=merged.node, label=ibis.ifelse(merged.m < merged.label, merged.m, merged.label)
            )
        )
        # a distinct view: Ibis would read a self-join's predicate as a filter of one side
        hop = lowered.view()
        hop = hop.select(hnode=hop.node, hlabel=hop.label)
        jumped = lowered.left_join(hop, lowered.label == hop.hnode)
        new = engine.materialize(
            jumped.select(
                node=jumped.node,
                label=ibis.ifelse(jumped.hlabel < jumped.label, jumped.hlabel, jumped.label),
            )
        )
        previous = labels.select(pnode=labels.node, plabel=labels.label)
        check = new.join(previous, new.node == previous.pnode)
        changed = int(engine.execute(check.filter(check.label != check.plabel).count()))
        labels = new
        if changed == 0:
            break
    else:
        raise ValueError(f"identity resolution did not converge in {max_rounds} rounds")

    uses = held.group_by("node").aggregate(uses=held.rec.count())
    usage = held.join(uses, "node")
    shared = usage.group_by("rec").aggregate(
        shared_kind=usage.kind.min(where=usage.uses >= 2),
    )
    per_rec = first.join(labels, first.first == labels.node).select("rec", canonical=labels.label)
    anchors = per_rec.group_by("canonical").aggregate(anchor=per_rec.rec.min())
    out = per_rec.join(anchors, "canonical").join(shared, "rec")
    return out.select(
        "rec",
        "canonical",
        shared_kind=out.shared_kind,
        is_anchor=out.rec == out.anchor,
    )


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

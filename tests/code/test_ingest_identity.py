"""Identity resolution on hand-made records, and the pairwise precision/recall measure."""

from __future__ import annotations

import pandas as pd
import pytest

from features.identity import customer_id_for, pairwise_precision_recall, resolve

SALT = "a-test-salt-123"


def records(rows):
    return pd.DataFrame(rows, columns=["contact_id", "email", "phone"]).astype("string[pyarrow]")


def test_transitive_merge_and_rules() -> None:
    recs = records(
        [
            ("C1", "a@x.cn", "+8613800138000"),  # 0 anchor of person A
            (None, "a2@x.cn", "+8613800138000"),  # 1 shares A's phone, brings a second email
            (None, "a2@x.cn", None),  # 2 reaches A only through record 1's email
            ("C1", None, None),  # 3 an event by contact id
            (None, "b@x.cn", None),  # 4 person B, seen once
        ]
    )
    out = resolve(recs, salt=SALT)
    ids = out["customer_id"].tolist()
    assert ids[0] == ids[1] == ids[2] == ids[3] != ids[4]
    assert out["match_rule"].tolist() == ["new", "email_exact", "email_exact", "contact_id", "new"]
    # The canonical key is the smallest key of the cluster: the contact id before any email or phone.
    assert ids[0] == customer_id_for(["contact_id:C1"], salt=SALT)[0]
    assert ids[4] == customer_id_for(["email:b@x.cn"], salt=SALT)[0]


def test_rule_prefers_contact_then_email_then_phone() -> None:
    recs = records([("C1", "a@x.cn", "+861"), ("C1", "a@x.cn", "+861"), (None, None, "+861")])
    assert resolve(recs, salt=SALT)["match_rule"].tolist() == ["new", "contact_id", "phone_e164"]


def test_ids_do_not_depend_on_row_order_but_on_salt() -> None:
    recs = records(
        [("C1", "a@x.cn", None), (None, "a@x.cn", "+862"), (None, None, "+863"), ("C9", None, "+863")]
    )
    forward = resolve(recs, salt=SALT)["customer_id"].tolist()
    backward = resolve(recs.iloc[::-1].reset_index(drop=True), salt=SALT)["customer_id"].tolist()[::-1]
    assert forward == backward
    assert set(forward) != set(resolve(recs, salt="another-salt-456")["customer_id"])
    assert all(len(c) == 13 and c.startswith("P") for c in forward)


def test_record_without_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one identity key"):
        resolve(records([("C1", None, None), (None, None, None)]), salt=SALT)


def test_pairwise_precision_recall_hand_computed() -> None:
    # predicted {0,1,2} {3}; truth {0,1} {2,3}: pairs put together 3, of which (0,1) is right;
    # true pairs 2, of which 1 was found.
    precision, recall = pairwise_precision_recall(
        pd.Series(["a", "a", "a", "b"]), pd.Series(["x", "x", "y", "y"])
    )
    assert precision == pytest.approx(1 / 3) and recall == pytest.approx(1 / 2)
    assert pairwise_precision_recall(pd.Series(["a", "b"]), pd.Series(["x", "y"])) == (1.0, 1.0)


def test_source_keys_keep_business_ids_and_never_an_email() -> None:
    from features.ingest import source_keys

    recs = records(
        [
            ("C1", "a@x.cn", None),  # a contact: its contact id
            (None, None, None),  # a lead: its lead id
            ("K-17", None, None),  # an order by customer number
            (None, "a@x.cn", None),  # an order by email: no business key
            ("bob@x.cn", None, None),  # a "customer number" that is an email: personal data, dropped
        ]
    )
    recs["source"] = pd.Categorical(["contacts", "leads", "orders", "orders", "orders"])
    recs["source_record_id"] = ["C1", "L9", "O1", "O2", "O3"]
    assert list(source_keys(recs)) == ["C1", "L9", "K-17", pd.NA, pd.NA]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resolving_repeated_keys_once_changes_nothing(seed) -> None:
    """Ingest sends the engine one record per repeated single key: same persons, same rules as
    resolving every record (repeats before and after multi-key records, anchors made of repeats)."""
    import numpy as np

    from features.engine import open_engine
    from features.ingest import resolve_records

    rng = np.random.default_rng(seed)
    pools = {
        "contact_id": [f"C{i}" for i in range(10)],
        "email": [f"{i}@x.cn" for i in range(30)],
        "phone": [f"+86{i}" for i in range(20)],
    }
    rows = []
    for _ in range(400):
        held = [k for k in pools if rng.random() < 0.1] or [str(rng.choice(list(pools)))]
        rows.append(tuple(str(rng.choice(pools[k])) if k in held else None for k in pools))
    recs = records(rows)
    assert recs.notna().sum(axis=1).eq(1).sum() > 100  # mostly single keys, as orders and events are
    with open_engine() as engine:
        expected = resolve(recs, salt=SALT, engine=engine)
        got = resolve_records(recs, salt=SALT, engine=engine)
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["match_rule"]) == {"new", "contact_id", "email_exact", "phone_e164"}
    assert got["customer_id"].nunique() > 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distinct_event_keys_with_counts_resolve_as_every_event(seed) -> None:
    """Ingest resolves the events as their distinct keys with a count each (`weights`): expanded back
    (the first event of a key takes the key row's result, the others its person and the key's kind),
    it gives every record the person and rule that resolving every event gives. Keys used by one event
    only, by many, and by contacts or orders before them are all drawn."""
    import numpy as np

    from features.engine import open_engine
    from features.identity import KEY_KINDS, RULES
    from features.ingest import resolve_records

    rng = np.random.default_rng(seed)
    pools = {
        "contact_id": [f"C{i}" for i in range(15)],
        "email": [f"{i}@x.cn" for i in range(40)],
        "phone": [f"+86{i}" for i in range(25)],
    }
    head = []  # contacts and leads (several keys) and orders (one key): resolved record by record
    for _ in range(150):
        held = [k for k in pools if rng.random() < 0.15] or [str(rng.choice(list(pools)))]
        head.append(tuple(str(rng.choice(pools[k])) if k in held else None for k in pools))
    events = []  # one key each, drawn with repeats (a key used once is a person seen once there)
    for i in range(600):
        kind = int(rng.integers(len(KEY_KINDS)))
        row = [None, None, None]
        fresh = rng.random() < 0.05  # a key no other record holds
        row[kind] = f"{i}-once" if fresh else str(rng.choice(pools[KEY_KINDS[kind]][: 5 + kind * 10]))
        events.append(tuple(row))
    everything = records(head + events)
    tail = records(events)
    first = ~tail.duplicated(keep="first").to_numpy()
    key = tail["contact_id"].fillna(tail["email"]).fillna(tail["phone"]).to_numpy()
    uses = pd.Series(key).value_counts()
    distinct = tail[first].reset_index(drop=True)
    weights = np.r_[np.ones(len(head), dtype="int64"), uses.reindex(key[first]).to_numpy()]
    assert (weights > 1).sum() > 20 and (weights[len(head) :] == 1).any()
    with open_engine() as engine:
        expected = resolve(everything, salt=SALT, engine=engine)
        got = resolve_records(
            pd.concat([records(head), distinct], ignore_index=True), salt=SALT, engine=engine, weights=weights
        )
    # expand the distinct keys back to one row per event
    at = pd.Index(key[first]).get_indexer(key)
    kind_rule = np.array([RULES[KEY_KINDS[int(np.argmax(r))]] for r in tail.notna().to_numpy()], dtype=object)
    rows = got.iloc[len(head) :].reset_index(drop=True)
    event_rule = np.where(first, rows["match_rule"].astype(object).to_numpy()[at], kind_rule)
    assert list(got["customer_id"].iloc[: len(head)]) == list(expected["customer_id"].iloc[: len(head)])
    assert list(got["match_rule"].iloc[: len(head)]) == list(expected["match_rule"].iloc[: len(head)])
    assert list(rows["customer_id"].to_numpy()[at]) == list(expected["customer_id"].iloc[len(head) :])
    assert list(event_rule) == list(expected["match_rule"].iloc[len(head) :])
    assert {"new", "email_exact", "phone_e164", "contact_id"} <= set(event_rule)


def test_weights_stand_only_for_repeats_of_one_key() -> None:
    import numpy as np

    from features.ingest import resolve_records

    recs = records([("C1", "a@x.cn", None), (None, "a@x.cn", None)])
    with pytest.raises(ValueError, match="weights"):
        resolve_records(recs, salt=SALT, weights=np.array([2, 1]))

"""Next best category: metrics, scores, lists and reasons on small hand-checked purchases; the gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.recommend import (
    Purchases,
    Spec,
    cooccurrence_similarity,
    epoch_day,
    evaluate,
    fit_recommender,
    popularity_of,
    ranking_metrics,
)
from training.recommend import gate_recommend

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
ITEMS = np.asarray(["apparel", "beauty", "books", "toys"], dtype=object)


def _purchases(rows: list[tuple[str, str, int]]) -> Purchases:
    """(customer, item, days before AS_OF)."""
    frame = pd.DataFrame(rows, columns=["customer_id", "category", "ago"])
    frame["order_ts"] = AS_OF - pd.to_timedelta(frame["ago"], unit="D")
    return Purchases.from_frame(frame, item="category")


HISTORY = _purchases(
    [
        ("a", "apparel", 100),
        ("a", "apparel", 50),
        ("a", "apparel", 20),
        ("a", "apparel", 10),
        ("b", "apparel", 30),
        ("b", "beauty", 40),
        ("c", "apparel", 5),
        ("c", "beauty", 6),
        ("d", "books", 3),
        ("d", "toys", 4),
        ("e", "books", 60),
    ]
)


def test_ranking_metrics_by_hand() -> None:
    ranked = np.asarray([[0, 1, 2, 3], [3, 2, 1, 0]])
    relevant = [{1, 3}, {3}]
    m = ranking_metrics(ranked, relevant, k=2, n_items=4, bought=[{1}, set()])
    # customer 1: top2 {0,1} holds 1 of {1,3} -> recall 0.5, hit; customer 2: top2 {3,2} holds 3 -> 1.0
    assert m["recall_at_2"] == pytest.approx(0.75)
    assert m["hit_rate_at_2"] == 1.0
    # NDCG: customer 1 gain at rank 2 -> (1/log2 3) / (1 + 1/log2 3); customer 2 at rank 1 -> 1
    first = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["ndcg_at_2"] == pytest.approx((first + 1.0) / 2)
    assert m["coverage"] == pytest.approx(4 / 4)  # {0,1} and {3,2}
    # new to customer 1: {3}; its top 2 among never-bought items are [0, 2] -> 0; customer 2: {3} -> 1
    assert m["new_recall_at_2"] == pytest.approx(0.5)


def test_popularity_is_the_share_of_recent_buyers() -> None:
    share = popularity_of(HISTORY, ITEMS, as_of_day=epoch_day(AS_OF))
    # 5 recent customers; apparel bought by a, b, c
    assert share.tolist() == pytest.approx([3 / 5, 2 / 5, 2 / 5, 1 / 5])


def test_cooccurrence_is_cosine_of_buyers() -> None:
    model = fit_recommender(
        HISTORY, spec=Spec("cooccurrence"), items=ITEMS, as_of_day=epoch_day(AS_OF), horizon_days=90, top_k=2
    )
    sim = cooccurrence_similarity(model.counts)
    # apparel buyers {a,b,c}, beauty {b,c}: 2 / sqrt(3 * 2)
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(6))
    assert sim[2, 3] == pytest.approx(1 / np.sqrt(2))  # books {d,e}, toys {d}
    assert sim[0, 2] == 0.0 and np.diag(sim).tolist() == [0.0] * 4


def test_buy_again_ranks_own_purchases_by_recency_weighted_frequency_and_explains() -> None:
    model = fit_recommender(
        HISTORY,
        spec=Spec("buy_again", half_life_days=30),
        items=ITEMS,
        as_of_day=epoch_day(AS_OF),
        horizon_days=90,
        top_k=2,
    )
    (got,) = model.recommend(["b"])
    # b: apparel 30 days ago (weight 0.5) beats beauty 40 days ago (0.397)
    assert [e["item"] for e in got["items"]] == ["apparel", "beauty"]
    assert got["items"][0] == {
        "item": "apparel",
        "score": pytest.approx(1.0 + 1e-6 * 3 / 5),
        "kind": "buy_again",
        "reason": "bought 1 time, last 30 days ago",
    }
    (a,) = model.recommend(["a"], as_of_day=epoch_day(AS_OF) + 2)
    assert a["items"][0]["reason"] == "bought 4 times, last 12 days ago"
    # the new list never holds a bought item; the rest come by popularity
    assert [e["item"] for e in a["new"]] == ["beauty", "books"]
    assert {e["kind"] for e in a["new"]} == {"new"}


def test_collaborative_new_item_reason_names_the_item_it_follows() -> None:
    model = fit_recommender(
        HISTORY,
        spec=Spec("hybrid_cooccurrence", half_life_days=90, weight=1.0),
        items=ITEMS,
        as_of_day=epoch_day(AS_OF),
        horizon_days=90,
        top_k=2,
    )
    (e,) = model.recommend(["e"])  # bought books; toys co-occur with books (d), nothing else does
    assert e["items"][0]["item"] == "books" and e["items"][0]["kind"] == "buy_again"
    assert e["new"][0] == {
        "item": "toys",
        "score": pytest.approx(1.0 + 1e-6 * 1 / 5),
        "kind": "new",
        "reason": "customers who buy books also buy toys",
    }


def test_unknown_customer_gets_the_popular_items() -> None:
    for name in ("buy_again", "als", "hybrid_cooccurrence"):
        model = fit_recommender(
            HISTORY, spec=Spec(name), items=ITEMS, as_of_day=epoch_day(AS_OF), horizon_days=90, top_k=2
        )
        (got,) = model.recommend(["stranger"])
        assert [e["item"] for e in got["items"]] == ["apparel", "beauty"], name
        assert got["items"][0]["reason"] == "popular: bought by 60% of recent customers"
        assert model.predict(pd.DataFrame({"customer_id": ["stranger"]}))["next_best_list"][0] == (
            "apparel, beauty"
        )


def test_fit_ignores_purchases_after_the_cut_and_evaluate_reads_the_next_window() -> None:
    cut = epoch_day(AS_OF) - 7  # d's books (3 days ago) and toys (4 days ago), c's (5, 6) are after it
    model = fit_recommender(
        HISTORY, spec=Spec("buy_again"), items=ITEMS, as_of_day=cut, horizon_days=7, top_k=1
    )
    assert "d" not in model.customers and "c" not in model.customers
    window = HISTORY.between(cut, epoch_day(AS_OF))
    metrics = evaluate(model, window, ks=(1,))
    # c (apparel, beauty) and d (books, toys) are cold: popularity says apparel -> c 1/2, d 0
    assert metrics["recall_at_1"] == pytest.approx(0.25)
    assert metrics["customers"] == 2


def test_gate_needs_both_baselines_and_the_champion() -> None:
    base = {"popularity": {"recall_at_3": 0.4}, "buy_again": {"recall_at_3": 0.6}}
    ok = gate_recommend(
        challenger={"recall_at_3": 0.65},
        baselines=base,
        champion=None,
        metric="recall_at_3",
        margin=0.0,
        champion_version=None,
    )
    assert ok.promote
    worse = gate_recommend(
        challenger={"recall_at_3": 0.55},
        baselines=base,
        champion=None,
        metric="recall_at_3",
        margin=0.0,
        champion_version=None,
    )
    assert not worse.promote and "buy_again" in worse.reason
    tie = gate_recommend(
        challenger={"recall_at_3": 0.65},
        baselines=base,
        champion={"recall_at_3": 0.65},
        metric="recall_at_3",
        margin=0.0,
        champion_version="2",
    )
    assert not tie.promote and "champion v2" in tie.reason


@pytest.mark.parametrize(
    "spec", [Spec("buy_again"), Spec("hybrid_cooccurrence", weight=0.5), Spec("als"), Spec("hybrid_als")]
)
def test_registered_model_holds_no_customer_and_scores_the_same_from_the_history(spec: Spec) -> None:
    """What is registered holds item-level parts only; with the purchases attached it answers as fitted."""
    import pickle

    day = epoch_day(AS_OF) + 1e-9
    fitted = fit_recommender(HISTORY, spec=spec, items=ITEMS, as_of_day=day, horizon_days=30, top_k=2)
    registered = fitted.without_history()
    assert registered.customers == {} and registered.counts.shape == (0, len(ITEMS))
    pinned = b"\x01a\x94"  # how pickle writes the customer id "a"
    assert pinned in pickle.dumps(fitted) and pinned not in pickle.dumps(registered)
    ids = ["a", "b", "c", "d", "e", "nobody"]
    assert all(r == -1 for r in registered.rows_of(ids))  # everyone is cold without the history
    served = registered.with_history(HISTORY, as_of_day=day)
    np.testing.assert_allclose(served.scores(served.rows_of(ids)), fitted.scores(fitted.rows_of(ids)))
    assert served.recommend(ids) == fitted.recommend(ids)


def test_history_without_a_customer_forgets_them() -> None:
    day = epoch_day(AS_OF) + 1e-9
    fitted = fit_recommender(
        HISTORY, spec=Spec("buy_again"), items=ITEMS, as_of_day=day, horizon_days=30, top_k=2
    )
    keep = HISTORY.customer != "a"
    erased = Purchases(HISTORY.customer[keep], HISTORY.item[keep], HISTORY.day[keep])
    served = fitted.without_history().with_history(erased, as_of_day=day)
    assert "a" not in served.customers
    # a is cold now: the popularity list, nothing "bought"
    got = served.recommend(["a"])[0]
    assert [e["kind"] for e in got["items"]] == ["new", "new"]
    assert got["items"][0]["reason"].startswith("popular")


def test_als_user_factors_are_implicits_least_squares_step() -> None:
    """The user factors solved at scoring time equal implicit's own recalculation on the item factors."""
    from implicit.cpu.als import user_factor

    spec = Spec("als", factors=2, regularization=0.1, alpha=10.0)
    model = fit_recommender(
        HISTORY, spec=spec, items=ITEMS, as_of_day=epoch_day(AS_OF) + 1e-9, horizon_days=30, top_k=2
    )
    y = np.asarray(model.item_factors, dtype=np.float64)
    conf = (model.counts * spec.alpha).tocsr()
    rows = np.arange(len(model.customers))
    ours = model.user_factors(rows)
    for r in rows:
        theirs = user_factor(y, y.T @ y, conf, r, spec.regularization, y.shape[1])
        np.testing.assert_allclose(ours[r], theirs, rtol=1e-8, atol=1e-10)


def test_reranker_sees_only_the_past_and_falls_back_without_enough_history() -> None:
    """Purchases after the clock change nothing; with too few customers in the horizon before the clock
    there is no ranker and the re-ranker scores as the buy-again + ALS hybrid."""
    day = epoch_day(AS_OF) - 10
    fitted = fit_recommender(
        HISTORY, spec=Spec("rerank"), items=ITEMS, as_of_day=day, horizon_days=30, top_k=2
    )
    assert fitted.ranker is None  # 5 customers, fewer than fit_ranker's minimum
    hybrid = fit_recommender(
        HISTORY, spec=Spec("hybrid_als", weight=1.0), items=ITEMS, as_of_day=day, horizon_days=30, top_k=2
    )
    ids = ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose(fitted.scores(fitted.rows_of(ids)), hybrid.scores(hybrid.rows_of(ids)))
    later = Purchases(
        np.append(HISTORY.customer, "a"), np.append(HISTORY.item, "toys"), np.append(HISTORY.day, day + 1)
    )
    again = fit_recommender(later, spec=Spec("rerank"), items=ITEMS, as_of_day=day, horizon_days=30, top_k=2)
    np.testing.assert_allclose(again.scores(again.rows_of(ids)), fitted.scores(fitted.rows_of(ids)))


def test_reranker_learns_the_order_from_the_horizon_before_its_clock() -> None:
    """Long ago, books and toys were bought together; in the last horizon, customers whose habit is
    apparel but who had books bought toys, not apparel again. The ranker, trained on that horizon, ranks
    toys first for such a customer, above their own habit."""
    rows = []
    for i in range(30):
        rows += [(f"old{i:02d}", "books", 300), (f"old{i:02d}", "toys", 290)]
    for i in range(60):
        c = f"c{i:02d}"
        rows += [(c, "apparel", 200), (c, "apparel", 150), (c, "books", 120), (c, "toys", 10)]
    purchases = _purchases(rows)
    day = epoch_day(AS_OF) + 1e-9
    model = fit_recommender(
        purchases, spec=Spec("rerank"), items=ITEMS, as_of_day=day, horizon_days=30, top_k=2
    )
    assert model.ranker is not None
    probe = _purchases([("new", "apparel", 100), ("new", "apparel", 90), ("new", "books", 80)])
    served = model.with_history(served_purchases(purchases, probe), as_of_day=day)
    got = served.recommend(["new"], k=2)[0]
    assert [e["item"] for e in got["items"]][0] == "toys", got
    assert got["items"][0]["kind"] == "new"
    # what it re-ranks would not: the buy-again + ALS hybrid keeps the habit first
    hybrid = fit_recommender(
        purchases, spec=Spec("hybrid_als", weight=1.0), items=ITEMS, as_of_day=day, horizon_days=30, top_k=2
    ).with_history(served_purchases(purchases, probe), as_of_day=day)
    assert hybrid.recommend(["new"], k=1)[0]["items"][0]["item"] == "apparel"


def served_purchases(purchases: Purchases, probe: Purchases) -> Purchases:
    return Purchases(
        np.append(purchases.customer, probe.customer),
        np.append(purchases.item, probe.item),
        np.append(purchases.day, probe.day),
    )


def _random_world(name: str, *, seed: int, customers: int, purchases: int, days: int):  # type: ignore[no-untyped-def]
    """`customers` people buying `purchases` times at random (skewed items) over `days`, and the fitted
    recommender `name` (top 3, 90-day horizon)."""
    rng = np.random.default_rng(seed)
    people = [f"c{i}" for i in range(customers)]
    rows = [
        (str(rng.choice(people)), str(rng.choice(ITEMS, p=[0.4, 0.3, 0.2, 0.1])), int(rng.integers(1, days)))
        for _ in range(purchases)
    ]
    model = fit_recommender(
        _purchases(rows), spec=Spec(name), items=ITEMS, as_of_day=epoch_day(AS_OF), horizon_days=90, top_k=3
    )
    return people, model


@pytest.mark.parametrize("name", ["popularity", "buy_again", "hybrid_cooccurrence", "als"])
def test_the_lists_equal_entry_by_entry_construction(name: str) -> None:
    """`recommend` describes an item once per customer and reads the customer's history once; the lists
    are what each entry built on its own (`_entry` without shared context) gives, in score order."""
    people, model = _random_world(name, seed=3, customers=40, purchases=160, days=300)
    ids = [*people, "stranger"]
    got = model.recommend(ids)
    scores = model.scores(model.rows_of(ids))
    now = model.as_of_day
    kinds = set()
    for i, (row, lists) in enumerate(zip(model.rows_of(ids), got, strict=True)):
        bought = model._bought(row)
        order = [int(j) for j in np.argsort(-scores[i], kind="stable")]
        fresh = [j for j in order if j not in bought]
        assert lists["items"] == [model._entry(row, j, scores[i, j], bought, now) for j in order[:3]]
        assert lists["new"] == [model._entry(row, j, scores[i, j], bought, now) for j in fresh[:3]]
        kinds |= {e["reason"].split(" ")[0] for e in lists["items"] + lists["new"]}
    assert len(kinds) >= 2, kinds  # more than one kind of reason is checked


@pytest.mark.parametrize("name", ["buy_again", "hybrid_cooccurrence", "als", "hybrid_als", "rerank"])
def test_one_customer_rows_cut_from_the_arrays_score_as_scipy_indexing(name: str, monkeypatch) -> None:
    """One customer (the usual online request) has its history row cut from the CSR arrays (densified
    and multiplied by the similarity without a sparse matrix); the scores and lists are, to the last bit,
    those scipy's row indexing and sparse product give."""
    import models.recommend as recommend

    people, model = _random_world(name, seed=5, customers=30, purchases=200, days=400)
    ids = [*people, "stranger"]
    for r in model.rows_of(people):
        for matrix in (model.counts, model.last_day, model.decayed):
            cut, indexed = recommend._take_rows(matrix, np.asarray([r])), matrix[np.asarray([r])]
            assert cut.shape == indexed.shape
            for part in ("data", "indices", "indptr"):
                assert np.array_equal(getattr(cut, part), getattr(indexed, part))
    fast = [(model.scores(model.rows_of([c])), model.recommend([c])) for c in ids]
    # the lists from scores computed once by the caller (serving's `next_best` pass) are the same lists
    assert [model.recommend([c], scores=model.scores_of([c])) for c in ids] == [lists for _, lists in fast]
    monkeypatch.setattr(recommend, "_take_rows", lambda matrix, rows: matrix[rows])
    monkeypatch.setattr(recommend, "_dense_rows", lambda matrix, rows: matrix[rows].toarray())
    monkeypatch.setattr(
        recommend, "_rows_times", lambda matrix, rows, dense: np.asarray(matrix[rows] @ dense)
    )
    slow = [(model.scores(model.rows_of([c])), model.recommend([c])) for c in ids]
    assert len({tuple(s[0]) for s, _ in slow}) > 5  # customers differ: a row mix-up would show
    for cid, (f_scores, f_lists), (s_scores, s_lists) in zip(ids, fast, slow, strict=True):
        assert np.array_equal(f_scores, s_scores) and f_lists == s_lists, cid


def _per_customer_metrics(ranked, relevant, *, k, bought):
    """The metrics one customer at a time, as written before `ranking_metrics` was vectorised."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, hit, ndcg, new_recall = [], [], [], []
    for i, rel in enumerate(relevant):
        if not rel:
            continue
        got = [j in rel for j in ranked[i, :k]]
        recall.append(sum(got) / len(rel))
        hit.append(float(any(got)))
        ndcg.append(float(np.dot(got, discounts[: len(got)]) / discounts[: min(len(rel), k)].sum()))
        fresh = rel - bought[i]
        if fresh:
            new_top = [j for j in ranked[i] if j not in bought[i]][:k]
            new_recall.append(len(fresh & set(new_top)) / len(fresh))
    return {
        f"recall_at_{k}": np.mean(recall),
        f"hit_rate_at_{k}": np.mean(hit),
        f"ndcg_at_{k}": np.mean(ndcg),
        f"new_recall_at_{k}": np.mean(new_recall),
        "customers": float(len(recall)),
    }


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_vectorised_metrics_equal_the_per_customer_ones(k: int) -> None:
    rng = np.random.default_rng(k)
    n, m = 3000, 12
    ranked = np.argsort(rng.random((n, m)), axis=1)
    relevant = [set(np.flatnonzero(rng.random(m) < rng.uniform(0, 0.5)).tolist()) for _ in range(n)]
    bought = [set(np.flatnonzero(rng.random(m) < 0.3).tolist()) for _ in range(n)]
    got = ranking_metrics(ranked, relevant, k=k, n_items=m, bought=bought)
    expected = _per_customer_metrics(ranked, relevant, k=k, bought=bought)
    assert 0 < expected["customers"] < n  # some customers have nothing relevant and are left out
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=0), name


def _matrices_by_strings(purchases: Purchases, items: np.ndarray, *, as_of_day: float, half_life_days: float):  # type: ignore[no-untyped-def]
    """The histories as every fit built them before the purchases were encoded once: strings sorted per
    fit, the latest purchase per pair by a pandas group-by (the reference the encoded path must equal)."""
    import scipy.sparse as sp

    customers, cust_code = np.unique(purchases.customer.astype(str), return_inverse=True)
    item_pos = {str(name): j for j, name in enumerate(items)}
    item_code = np.asarray([item_pos[str(x)] for x in purchases.item], dtype=np.int64)
    shape = (len(customers), len(items))
    counts = sp.csr_matrix((np.ones(len(item_code)), (cust_code, item_code)), shape=shape)
    weight = np.power(0.5, np.maximum(as_of_day - purchases.day, 0.0) / half_life_days)
    decayed = sp.csr_matrix((weight, (cust_code, item_code)), shape=shape)
    order = np.argsort(purchases.day, kind="stable")
    last = pd.Series(purchases.day[order]).groupby([cust_code[order], item_code[order]]).last()
    last_day = sp.csr_matrix(
        (last.to_numpy(), (last.index.get_level_values(0), last.index.get_level_values(1))), shape=shape
    )
    return {str(c): i for i, c in enumerate(customers)}, counts.tocsr(), last_day.tocsr(), decayed.tocsr()


def _messy_purchases(seed: int, *, n: int = 3000) -> Purchases:
    """Unsorted ids of uneven length (sorted as strings, not numbers), repeated pairs, tied days."""
    rng = np.random.default_rng(seed)
    customer = np.asarray([f"c{i}" for i in rng.integers(0, 400, n)], dtype=object)
    item = rng.choice(ITEMS, size=n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    day = epoch_day(AS_OF) - rng.integers(0, 700, n).astype(np.float64) - rng.choice([0.0, 0.25, 0.5], n)
    return Purchases(customer, item, day)


@pytest.mark.parametrize("seed", [0, 1])
def test_encoded_purchases_give_the_histories_the_strings_gave(seed: int) -> None:
    """Encoding once (customer codes in string order, one (customer, item, day) sort) and cutting the codes
    gives, bit for bit, the matrices, popularity and evaluation windows of sorting the strings per fit."""
    from models.recommend import EncodedPurchases, _matrices, relevant_matrix

    purchases = _messy_purchases(seed)
    encoded = EncodedPurchases.encode(purchases, ITEMS)
    decoded = encoded.decode()  # what the histories table is written from
    for column in ("customer", "item", "day"):
        assert getattr(decoded, column).tolist() == getattr(purchases, column).tolist()
    for cut in (epoch_day(AS_OF) - 400, epoch_day(AS_OF) - 90.25, epoch_day(AS_OF) + 1):
        want = _matrices_by_strings(purchases.before(cut), ITEMS, as_of_day=cut, half_life_days=30.0)
        got = _matrices(encoded.before(cut), as_of_day=cut, half_life_days=30.0)
        assert got[0] == want[0]
        for mine, theirs in zip(got[1:], want[1:], strict=True):
            assert mine.shape == theirs.shape
            assert np.array_equal(mine.indptr, theirs.indptr) and np.array_equal(mine.indices, theirs.indices)
            assert np.array_equal(mine.data, theirs.data)  # exact: the same sums in the same order
        recent = purchases.between(cut - 365, cut)
        pairs = pd.DataFrame({"c": recent.customer, "i": recent.item}).drop_duplicates()
        share = pairs["i"].value_counts().reindex(ITEMS, fill_value=0).to_numpy() / pairs["c"].nunique()
        assert popularity_of(encoded, ITEMS, as_of_day=cut).tolist() == share.tolist()
        assert popularity_of(purchases, ITEMS, as_of_day=cut).tolist() == share.tolist()
        window = purchases.between(cut - 90, cut)
        ids, bought = relevant_matrix(encoded.between(cut - 90, cut), ITEMS)
        assert ids.tolist() == sorted(set(window.customer))
        expected = {(c, str(i)) for c, i in zip(window.customer, window.item, strict=True)}
        assert {(ids[r], str(ITEMS[j])) for r, j in zip(*np.nonzero(bought), strict=True)} == expected


def test_an_encoding_is_refused_against_another_catalog() -> None:
    from models.recommend import EncodedPurchases

    encoded = EncodedPurchases.encode(HISTORY, ITEMS)
    with pytest.raises(ValueError, match="another item catalog"):
        fit_recommender(
            encoded, spec=Spec("buy_again"), items=ITEMS[:3], as_of_day=0.0, horizon_days=30, top_k=2
        )


def test_candidates_sharing_parts_fit_each_cut_once_and_score_as_fitted_alone(monkeypatch) -> None:
    """With one `parts` dict, the ALS factors (and similarity, popularity) of a cut are fitted once for
    every candidate that needs them, and each candidate scores exactly as when fitted on its own."""
    import models.recommend as recommend
    from models.recommend import EncodedPurchases

    purchases = _messy_purchases(3)
    encoded, parts = EncodedPurchases.encode(purchases, ITEMS), {}
    day = epoch_day(AS_OF) - 30
    calls = []
    fit_als = recommend.fit_als
    monkeypatch.setattr(
        recommend,
        "fit_als",
        lambda counts, spec, *, seed: calls.append(counts.shape) or fit_als(counts, spec, seed=seed),
    )
    specs = [
        Spec("als"),
        *(Spec("hybrid_als", weight=w, half_life_days=h) for w, h in ((0.5, 30.0), (1.0, 365.0))),
        Spec("rerank"),
    ]
    rows = np.arange(50)
    for spec in specs:
        common = dict(spec=spec, items=ITEMS, as_of_day=day, horizon_days=90, top_k=2, seed=7)
        shared = fit_recommender(encoded, parts=parts, **common)
        alone = fit_recommender(purchases, **common)
        assert np.array_equal(shared.scores(rows), alone.scores(rows)), spec
    # alone: one fit per candidate (two for rerank); shared: the cut and rerank's earlier cut, once each
    assert len(calls) == len(specs) + 1 + 2, calls


@pytest.mark.parametrize(
    "name", ["popularity", "buy_again", "cooccurrence", "hybrid_cooccurrence", "als", "rerank"]
)
@pytest.mark.parametrize("seed", [1, 8])
def test_many_customers_at_once_get_the_lists_each_gets_alone(name: str, seed: int, monkeypatch) -> None:
    """The lists of a many-customer request (numpy over all of them, `_recommend_many`) are, entry for
    entry, the lists each customer gets alone (the per-customer path), repeated and unknown ids included;
    purchases on few days make equal recency weights, so ties between explaining items are exercised.
    Both from the same scores (ALS solves its user factors as a batch: the last bits can differ)."""
    people, model = _random_world(name, seed=seed, customers=60, purchases=150, days=6)
    ids = [*people, "stranger", people[0], "c-unknown"]
    scores = model.scores_of(ids)
    together = model.recommend(ids, scores=scores)
    alone = [model.recommend([c], scores=scores[i : i + 1])[0] for i, c in enumerate(ids)]
    assert together == alone
    import models.recommend as recommend

    monkeypatch.setattr(recommend, "_EXPLAIN_VALUES", 50)  # new items explained a few customers at a time
    assert model.recommend(ids, scores=scores) == alone
    reasons = {e["reason"].split(" ")[0] for lists in together for e in lists["items"] + lists["new"]}
    assert len(reasons) >= 2, reasons  # more than one kind of reason compared
    assert len(together) == len(ids)

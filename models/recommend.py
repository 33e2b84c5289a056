"""Next best category (or product): the items each customer is most likely to buy in the next horizon.

Pure model code on purchase arrays (customer, item, day). Candidates, all behind `Recommender`:

- `popularity`: share of recently active customers who bought each item (the same list for everyone);
- `buy_again`: the customer's own purchases weighted by recency (half-life decay), then popularity;
- `cooccurrence`: item-item cosine similarity of who bought what, applied to the customer's history;
- `als`: implicit-feedback matrix factorisation (`implicit`'s ALS, on CPU) of the customer x item counts;
- `hybrid_cooccurrence` / `hybrid_als`: buy-again plus `weight` x the collaborative score (each scaled
  to its per-customer maximum), so own habits and "customers like this" are weighed on validation;
- `rerank`: a LightGBM LambdaRank model over the candidates' scores and point-in-time purchase features
  of each (customer, item) pair (`RERANK_FEATURES`), trained on the horizon just before its clock (the
  candidates fitted before that horizon, labels = what was bought in it), so it only sees the past.

Every list is split by kind: `buy_again` (bought before) or `new` (never bought by this customer), each
item with a short reason. Metrics: recall@k, hit-rate@k, NDCG@k, catalog coverage, and recall@k of the
items new to the customer.

Personal data stays out of the fitted model: what is registered (`without_history`) holds only item-level
parts (popularity, similarity, item factors, the ranker). The purchases the histories are built from are a
table of their own (`Purchases.to_frame`) that erasure rewrites; serving attaches it at load
(`with_history`). ALS user factors are not stored either: they are solved from the history with the
fitted item factors when scoring (implicit's own least-squares step), so an erased customer leaves
nothing behind in the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

CANDIDATES = ("popularity", "buy_again", "cooccurrence", "als", "hybrid_cooccurrence", "hybrid_als", "rerank")
# The re-ranker's inputs per (customer, item), all from purchases before the model's clock: the three
# candidate scores, popularity, and the customer's own record with the item and overall.
RERANK_FEATURES = (
    "buy_again_score",
    "cooccurrence_score",
    "als_score",
    "popularity",
    "purchases",
    "days_since_purchase",
    "customer_purchases",
    "customer_items",
)
RERANK_MAX_ITEMS = 50  # every item of every customer is a candidate pair: categories, small catalogs
POPULARITY_DAYS = 365.0  # popularity counts buyers of the last year before the cut
TIE_BREAK = 1e-6  # popularity breaks ties (and fills lists) under every model
_EXPLAIN_VALUES = 4_000_000  # at most this many floats at once when explaining many customers' new items


@dataclass(frozen=True)
class Spec:
    """A candidate and its settings (what the gate refits on the champion's behalf)."""

    name: str
    half_life_days: float = 90.0
    weight: float = 1.0  # hybrids: weight of the collaborative score
    factors: int = 8  # als
    regularization: float = 0.1
    alpha: float = 10.0
    iterations: int = 15

    def params(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Purchases:
    """Purchases as parallel arrays: customer id, item name, day (float days since the epoch, UTC)."""

    customer: np.ndarray
    item: np.ndarray
    day: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, item: str) -> Purchases:
        """From rows with `customer_id`, `order_ts` (UTC) and the item column."""
        ts = pd.to_datetime(frame["order_ts"], utc=True)
        day = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy() / 86400.0
        return cls(
            customer=frame["customer_id"].astype(str).to_numpy(dtype=object),
            item=frame[item].astype(str).to_numpy(dtype=object),
            day=day.astype(np.float64),
        )

    def to_frame(self) -> pd.DataFrame:
        """`customer_id`, `item`, `day`: what `from_stored` reads back."""
        return pd.DataFrame(
            {
                "customer_id": pd.array(self.customer.astype(str), dtype="string"),
                "item": pd.array(self.item.astype(str), dtype="string"),
                "day": self.day,
            }
        )

    @classmethod
    def from_stored(cls, frame: pd.DataFrame) -> Purchases:
        return cls(
            customer=frame["customer_id"].astype(str).to_numpy(dtype=object),
            item=frame["item"].astype(str).to_numpy(dtype=object),
            day=frame["day"].to_numpy(dtype=np.float64),
        )

    def before(self, cut_day: float) -> Purchases:
        keep = self.day < cut_day
        return Purchases(self.customer[keep], self.item[keep], self.day[keep])

    def between(self, start_day: float, end_day: float) -> Purchases:
        keep = (self.day >= start_day) & (self.day < end_day)
        return Purchases(self.customer[keep], self.item[keep], self.day[keep])


@dataclass(frozen=True)
class EncodedPurchases:
    """Purchases as integer codes, encoded once and shared by every fit and evaluation of a training run.

    `customer` indexes `ids` (the customer ids, sorted as strings: code order is the histories' row
    order), `item` indexes `items`; rows keep the order of the purchases they came from, so the sparse
    sums are the same as from the strings. `by_pair` orders the rows by (customer, item, day), built with
    one sort: a cut keeps that order, so the latest purchase per pair and the buyers per item are read off
    without sorting again (each candidate used to re-sort every purchase as strings)."""

    ids: np.ndarray  # customer ids (object), sorted
    items: np.ndarray  # item names (object)
    customer: np.ndarray  # int32 codes into ids
    item: np.ndarray  # int32 codes into items
    day: np.ndarray  # float64 epoch days
    by_pair: np.ndarray  # row positions sorted by (customer, item, day)

    @classmethod
    def encode(cls, purchases: Purchases, items: np.ndarray) -> EncodedPurchases:
        """Codes of `purchases` against the catalog `items` (purchases of other items are left out)."""
        item_code = pd.Index(np.asarray(items, dtype=object).astype(str)).get_indexer(
            purchases.item.astype(str)
        )
        known = item_code >= 0
        names = purchases.customer[known].astype(str)
        first_seen, uniques = pd.factorize(names, sort=False)
        order = np.argsort(uniques.astype(str), kind="stable")  # np.unique's order: code points
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        # 32-bit codes: a billion purchases still fit, at half the memory of the default 64-bit ones
        customer = rank[first_seen].astype(np.int32) if len(names) else np.zeros(0, dtype=np.int32)
        item = item_code[known].astype(np.int32)
        day = np.asarray(purchases.day[known], dtype=np.float64)
        by_pair = np.lexsort((day, item, customer)).astype(np.int32)
        return cls(
            ids=np.asarray(uniques, dtype=object)[order],
            items=np.asarray(items, dtype=object),
            customer=customer,
            item=item,
            day=day,
            by_pair=by_pair,
        )

    def __len__(self) -> int:
        return len(self.day)

    def decode(self) -> Purchases:
        """The purchases as ids and names again (rows in the same order; the strings are shared)."""
        return Purchases(self.ids[self.customer], self.items[self.item], self.day)

    def _where(self, keep: np.ndarray) -> EncodedPurchases:
        position = np.cumsum(keep, dtype=np.int32) - 1  # new position of each kept row
        by_pair = position[self.by_pair[keep[self.by_pair]]]
        return replace(
            self, customer=self.customer[keep], item=self.item[keep], day=self.day[keep], by_pair=by_pair
        )

    def before(self, cut_day: float) -> EncodedPurchases:
        return self._where(self.day < cut_day)

    def between(self, start_day: float, end_day: float) -> EncodedPurchases:
        return self._where((self.day >= start_day) & (self.day < end_day))


def _encoded(purchases: Purchases | EncodedPurchases, items: np.ndarray) -> EncodedPurchases:
    """`purchases` as codes against `items` (already encoded ones must be against the same catalog)."""
    if isinstance(purchases, EncodedPurchases):
        if not np.array_equal(purchases.items.astype(str), np.asarray(items, dtype=object).astype(str)):
            raise ValueError("purchases were encoded against another item catalog")
        return purchases
    return EncodedPurchases.encode(purchases, items)


def epoch_day(ts: pd.Timestamp) -> float:
    return (pd.Timestamp(ts).tz_convert("UTC") - pd.Timestamp(0, tz="UTC")).total_seconds() / 86400.0


# ------------------------------------------------------------------------------------------ the model
@dataclass
class Recommender:
    """A fitted candidate with the histories it scores from (as of `as_of_day`).

    Serving loads it with the champion: `recommend(ids)` reads each customer's row of `counts`,
    `last_day` and `decayed` (customers without a history get the popularity list).
    """

    spec: Spec
    items: np.ndarray  # item names (object)
    level: str  # "category" | "product"
    horizon_days: int
    top_k: int
    as_of_day: float
    customers: dict[str, int]
    counts: sp.csr_matrix  # purchases per (customer, item)
    last_day: sp.csr_matrix  # epoch day of the latest purchase per (customer, item)
    decayed: sp.csr_matrix  # recency-weighted purchases per (customer, item)
    popularity: np.ndarray  # share of recently active customers buying each item
    similarity: np.ndarray | None = None  # cooccurrence: item x item cosine, zero diagonal
    item_factors: np.ndarray | None = None  # als (user factors are solved from the history)
    ranker: Any = None  # rerank: a lightgbm Booster over RERANK_FEATURES (None: too little history)
    features: tuple[str, ...] = ()  # the FeatureService inputs serving reads (presence, freshness)
    metadata: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------- scoring
    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores (len(rows) x items) for history rows (-1 = no history: popularity only)."""
        rows = np.asarray(rows, dtype=np.int64)
        n, m = len(rows), len(self.items)
        known = rows >= 0
        base = np.tile(self.popularity * TIE_BREAK, (n, 1))
        name = self.spec.name
        if name == "popularity" or not known.any():  # cold start too: the popular items
            return base + self.popularity
        r = rows[known]
        if name == "rerank" and self.ranker is not None:
            raw = self.ranker.predict(self.pair_features(r), num_threads=1).reshape(len(r), m)
            out = base.copy()
            out[known] += 1.0 / (1.0 + np.exp(-raw))  # a probability-like scale; the order is the ranker's
            if not known.all():
                out[~known] += self.popularity
            return out
        own = _row_max_scaled(_dense_rows(self.decayed, r))
        if name == "buy_again":
            part = own
        else:
            if name.endswith("cooccurrence"):
                assert self.similarity is not None
                collab = _rows_times(self.decayed, r, self.similarity)
            else:
                assert self.item_factors is not None
                collab = self.user_factors(r) @ self.item_factors.T
            collab = _row_max_scaled(np.maximum(collab, 0.0))
            hybrid = name.startswith("hybrid") or name == "rerank"  # rerank without a ranker: hybrid_als
            part = own + self.spec.weight * collab if hybrid else collab
        out = base.copy()
        out[known] += part
        if n and not known.all():
            out[~known] += self.popularity  # cold start: the popular items
        return out if m else out[:, :0]

    def pair_features(self, rows: np.ndarray) -> np.ndarray:
        """RERANK_FEATURES of every (history row, item) pair, row-major: (len(rows) x items, features)."""
        assert self.similarity is not None and self.item_factors is not None
        decayed = _take_rows(self.decayed, rows)
        own = _row_max_scaled(decayed.toarray())
        co = _row_max_scaled(np.maximum(np.asarray(decayed @ self.similarity), 0.0))
        als = _row_max_scaled(np.maximum(self.user_factors(rows) @ self.item_factors.T, 0.0))
        counts = _take_rows(self.counts, rows).toarray()
        days = np.where(counts > 0, self.as_of_day - _take_rows(self.last_day, rows).toarray(), np.nan)
        shape = counts.shape
        columns = [
            own,
            co,
            als,
            np.broadcast_to(self.popularity, shape),
            counts,
            days,
            np.broadcast_to(counts.sum(axis=1, keepdims=True), shape),
            np.broadcast_to((counts > 0).sum(axis=1, keepdims=True), shape),
        ]
        return np.stack([np.asarray(c, dtype=np.float64).ravel() for c in columns], axis=1)

    def user_factors(self, rows: np.ndarray) -> np.ndarray:
        """ALS user factors of history rows: the least-squares step of implicit's ALS on the fitted item
        factors, with confidence alpha x purchases (x = (Y'CY + reg I)^-1 Y'Cp), solved per customer."""
        assert self.item_factors is not None
        y = np.asarray(self.item_factors, dtype=np.float64)
        f = y.shape[1]
        conf = _dense_rows(self.counts, rows) * self.spec.alpha
        bought = conf > 0
        a = y.T @ y + self.spec.regularization * np.eye(f)
        a = a[None, :, :] + np.einsum("nm,mf,mg->nfg", np.where(bought, conf - 1.0, 0.0), y, y)
        b = np.where(bought, conf, 0.0) @ y
        return np.linalg.solve(a, b[:, :, None])[:, :, 0] if len(rows) else np.zeros((0, f))

    # ---------------------------------------------------------------------------------- histories
    def without_history(self) -> Recommender:
        """The same model with no customer in it (what is registered): empty histories."""
        empty = sp.csr_matrix((0, len(self.items)), dtype=np.float64)
        return replace(self, customers={}, counts=empty, last_day=empty.copy(), decayed=empty.copy())

    def with_history(self, purchases: Purchases | EncodedPurchases, *, as_of_day: float) -> Recommender:
        """The model scoring from `purchases` (those before `as_of_day`; items it does not know are
        ignored), its histories rebuilt with its own half-life: any version can read the same table."""
        kept = _encoded(purchases, self.items).before(as_of_day)  # items it does not know are dropped
        index, counts, last_day, decayed = _matrices(
            kept, as_of_day=as_of_day, half_life_days=self.spec.half_life_days
        )
        metadata = {**self.metadata, "as_of": _iso_day(as_of_day)}
        return replace(
            self,
            as_of_day=as_of_day,
            customers=index,
            counts=counts,
            last_day=last_day,
            decayed=decayed,
            metadata=metadata,
        )

    def rows_of(self, customer_ids: list[str] | np.ndarray) -> np.ndarray:
        return np.asarray([self.customers.get(str(c), -1) for c in customer_ids], dtype=np.int64)

    def scores_of(self, customer_ids: list[str] | np.ndarray) -> np.ndarray:
        """Scores (len(ids) x items) of customers by id."""
        return self.scores(self.rows_of(customer_ids))

    def top_of(self, scores: np.ndarray, k: int | None = None) -> np.ndarray:
        """Item indices of `scores`' rows, best first (rows x k)."""
        return _top(scores, k or self.top_k)

    def top_items(self, customer_ids: list[str] | np.ndarray, k: int | None = None) -> np.ndarray:
        """Item indices, best first (len(ids) x k)."""
        return self.top_of(self.scores_of(customer_ids), k)

    def recommend(
        self,
        customer_ids: list[str] | np.ndarray,
        *,
        k: int | None = None,
        as_of_day: float | None = None,
        scores: np.ndarray | None = None,
    ) -> list[dict[str, list[dict[str, Any]]]]:
        """Per customer: `items` (the top k, each `buy_again` or `new`) and `new` (the top k never bought),
        each entry {item, score, kind, reason}. `scores`: `scores_of(customer_ids)` when the caller has
        them already (serving scored the same customers for `next_best`)."""
        k = k or self.top_k
        rows = self.rows_of(customer_ids)
        scores = self.scores(rows) if scores is None else scores
        now = self.as_of_day if as_of_day is None else as_of_day
        if len(rows) > 1 and self.counts.has_sorted_indices:
            return self._recommend_many(rows, scores, k, now)
        orders = np.argsort(-scores, axis=1, kind="stable")
        out = []
        for i, row in enumerate(rows):
            bought = self._bought(row)
            order = orders[i].tolist()
            top = order[:k]
            new = [j for j in order if j not in bought][:k]
            # an item in both lists is described once; what explains new items is read once per customer
            explainers = self._explainers(row, bought)
            entries = {
                j: self._entry(row, j, scores[i, j], bought, now, explainers)
                for j in dict.fromkeys(top + new)
            }
            out.append({"items": [entries[j] for j in top], "new": [dict(entries[j]) for j in new]})
        return out

    def _recommend_many(
        self, rows: np.ndarray, scores: np.ndarray, k: int, now: float
    ) -> list[dict[str, list[dict[str, Any]]]]:
        """`recommend` for many customers at once, entry for entry the same: the lists, what each
        customer bought and the item explaining each new item are found with numpy over all of them;
        only the entries' dicts and texts are built per customer. The bought items' order (what breaks
        ties between explaining items) is the CSR rows' sorted column order, hence `has_sorted_indices`."""
        n, m = scores.shape
        k = min(k, m)
        orders = np.argsort(-scores, axis=1, kind="stable")
        known = rows >= 0
        stored = np.zeros((n, m), dtype=bool)
        counts, last, decayed = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m))
        if known.any():
            r = rows[known]
            sub = _take_rows(self.counts, r)
            ones = sp.csr_matrix((np.ones(len(sub.data)), sub.indices, sub.indptr), shape=sub.shape)
            stored[known] = ones.toarray() > 0  # bought = a stored entry, whatever its value
            counts[known] = sub.toarray()
            last[known] = _dense_rows(self.last_day, r)
            decayed[known] = _dense_rows(self.decayed, r)
        # the first k never-bought items in score order (fewer where fewer exist)
        by_bought = np.argsort(np.take_along_axis(stored, orders, axis=1), axis=1, kind="stable")[:, :k]
        new = np.take_along_axis(orders, by_bought, axis=1)
        new_len = np.minimum(k, m - stored.sum(axis=1)).tolist()
        chosen = np.concatenate([orders[:, :k], new], axis=1)  # n x 2k: the top, then the new
        bought = np.take_along_axis(stored, chosen, axis=1)
        times = np.take_along_axis(counts, chosen, axis=1).astype(np.int64)
        days = np.maximum(0, np.floor(now - np.take_along_axis(last, chosen, axis=1))).astype(np.int64)
        any_bought = stored.any(axis=1)
        explained = self.spec.name not in ("popularity", "buy_again")
        source = np.zeros_like(chosen)
        similar = np.zeros(chosen.shape, dtype=bool)
        if explained and self.similarity is not None and m:
            # per chosen item: the bought item with the largest similarity x recency weight (first of
            # equals in column order, as argmax over the customer's sorted bought items); customers x
            # chosen x items values, so a product catalog is taken a slice of customers at a time
            step = max(1, _EXPLAIN_VALUES // (chosen.shape[1] * m))
            for lo in range(0, n, step):
                part = slice(lo, lo + step)
                weighed = self.similarity.T[chosen[part]] * decayed[part, None, :]
                source[part] = np.argmax(np.where(stored[part, None, :], weighed, -np.inf), axis=2)
            similar = self.similarity[source, chosen] > 0
        names = [str(item) for item in self.items]
        popular = [self._popular(j) for j in range(m)]
        out = []
        for i, (js, b, t, d, src, sim, s) in enumerate(
            zip(
                chosen.tolist(),
                bought.tolist(),
                times.tolist(),
                days.tolist(),
                source.tolist(),
                similar.tolist(),
                np.take_along_axis(scores, chosen, axis=1).tolist(),
                strict=True,
            )
        ):
            history = known[i] and any_bought[i]
            entries = []
            for c in range(k + new_len[i]):
                j = js[c]
                if b[c]:
                    days_c = d[c]
                    reason = (
                        f"bought {t[c]} {'time' if t[c] == 1 else 'times'}, "
                        f"last {days_c} day{'s' if days_c != 1 else ''} ago"
                    )
                    entries.append({"item": names[j], "score": s[c], "kind": "buy_again", "reason": reason})
                    continue
                if not history or not explained:
                    reason = popular[j]
                elif self.similarity is None:
                    reason = f"customers like this buy {names[j]}"
                elif sim[c]:
                    reason = f"customers who buy {names[src[c]]} also buy {names[j]}"
                else:
                    reason = popular[j]
                entries.append({"item": names[j], "score": s[c], "kind": "new", "reason": reason})
            out.append({"items": entries[:k], "new": entries[k:]})
        return out

    def _bought(self, row: int) -> dict[int, tuple[int, float]]:
        if row < 0:
            return {}
        c_items, c_data = _csr_row(self.counts, row)
        last = dict(zip(*(a.tolist() for a in _csr_row(self.last_day, row)), strict=True))
        return {j: (int(n), last[j]) for j, n in zip(c_items.tolist(), c_data.tolist(), strict=True)}

    def _explainers(
        self, row: int, bought: dict[int, tuple[int, float]]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The items a customer bought (in `bought` order) and their recency-decayed weights: what a new
        item's reason names (None where reasons do not read them)."""
        if row < 0 or not bought or self.spec.name in ("popularity", "buy_again") or self.similarity is None:
            return None
        d_items, d_data = _csr_row(self.decayed, row)
        weight = dict(zip(d_items.tolist(), d_data.tolist(), strict=True))
        sources = np.fromiter(bought, dtype=np.int64, count=len(bought))
        return sources, np.asarray([weight.get(b, 0.0) for b in bought])

    def _entry(
        self,
        row: int,
        j: int,
        score: float,
        bought: dict[int, tuple[int, float]],
        now: float,
        explainers: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        item = str(self.items[j])
        if j in bought:
            times, last = bought[j]
            days = max(0, int(np.floor(now - last)))
            noun = "time" if times == 1 else "times"
            reason = f"bought {times} {noun}, last {days} day{'s' if days != 1 else ''} ago"
            return {"item": item, "score": float(score), "kind": "buy_again", "reason": reason}
        if explainers is None:
            explainers = self._explainers(row, bought)
        reason = self._new_reason(row, j, bought, explainers)
        return {"item": item, "score": float(score), "kind": "new", "reason": reason}

    def _new_reason(
        self,
        row: int,
        j: int,
        bought: dict[int, tuple[int, float]],
        explainers: tuple[np.ndarray, np.ndarray] | None,
    ) -> str:
        item = str(self.items[j])
        if row < 0 or not bought or self.spec.name in ("popularity", "buy_again"):
            return self._popular(j)
        if self.similarity is not None and explainers is not None:
            # the bought item that most explains j (first of equals, in `bought` order)
            sources, weights = explainers
            source = int(sources[int(np.argmax(self.similarity[sources, j] * weights))])
            if self.similarity[source, j] > 0:
                return f"customers who buy {self.items[source]} also buy {item}"
            return self._popular(j)
        return f"customers like this buy {item}"

    def _popular(self, j: int) -> str:
        return f"popular: bought by {100 * self.popularity[j]:.0f}% of recent customers"

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The pyfunc view: `customer_id` -> the top item and the top-k list (comma-separated)."""
        top = self.top_items(frame["customer_id"].astype(str).to_numpy())
        names = self.items[top] if top.size else np.empty((len(frame), 0), dtype=object)
        return pd.DataFrame(
            {
                "next_best": [r[0] if len(r) else None for r in names],
                "next_best_list": [", ".join(map(str, r)) for r in names],
            }
        )


def _csr_row(matrix: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values) of one CSR row, straight from its arrays: indexing the matrix builds a
    new sparse matrix per call, which was most of a served customer's recommendation time."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[start:end], matrix.data[start:end]


def _take_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """`matrix[rows]` (same values, same stored order). For the one customer a request usually names,
    the row is cut from the CSR arrays directly: scipy's fancy indexing costs several times more there."""
    if len(rows) != 1:
        return matrix[rows]
    cols, values = _csr_row(matrix, int(rows[0]))
    indptr = np.asarray([0, len(cols)], dtype=matrix.indptr.dtype)
    return sp.csr_matrix((values, cols, indptr), shape=(1, matrix.shape[1]))


def _dense_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """`matrix[rows].toarray()`; one row straight from the CSR arrays (building a one-row sparse matrix
    cost more than scoring the customer)."""
    if len(rows) != 1:
        return _take_rows(matrix, rows).toarray()
    cols, values = _csr_row(matrix, int(rows[0]))
    out = np.zeros((1, matrix.shape[1]), dtype=matrix.dtype)
    out[0, cols] += values  # as toarray: each stored value added to 0 (the columns of a row are unique)
    return out


def _rows_times(matrix: sp.csr_matrix, rows: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """`matrix[rows] @ dense` as scipy computes it for one row (each stored value times its row of
    `dense`, added in stored order: the same sums, bit for bit), without building a sparse matrix."""
    if len(rows) != 1:
        return np.asarray(_take_rows(matrix, rows) @ dense)
    cols, values = _csr_row(matrix, int(rows[0]))
    out = np.zeros(dense.shape[1], dtype=np.result_type(values, dense))
    for j, value in zip(cols.tolist(), values.tolist(), strict=True):
        out += value * dense[j]
    return out[None, :]


def _iso_day(day: float) -> str:
    return (pd.Timestamp(0, tz="UTC") + pd.Timedelta(days=day)).isoformat()


def _row_max_scaled(matrix: np.ndarray) -> np.ndarray:
    peak = matrix.max(axis=1, keepdims=True) if matrix.size else matrix
    return np.divide(matrix, peak, out=np.zeros_like(matrix, dtype=np.float64), where=peak > 0)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------------------------------ fitting
def _matrices(
    purchases: EncodedPurchases, *, as_of_day: float, half_life_days: float
) -> tuple[dict[str, int], sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    n_ids = len(purchases.ids)
    present = np.flatnonzero(np.bincount(purchases.customer, minlength=n_ids))
    row_of = np.full(n_ids, -1, dtype=np.int64)
    row_of[present] = np.arange(len(present))
    index = dict(zip(purchases.ids[present].tolist(), range(len(present)), strict=True))
    cust_code, item_code = row_of[purchases.customer], purchases.item
    shape = (len(present), len(purchases.items))
    counts = sp.csr_matrix((np.ones(len(item_code)), (cust_code, item_code)), shape=shape)
    counts.sum_duplicates()
    weight = np.power(0.5, np.maximum(as_of_day - purchases.day, 0.0) / half_life_days)
    decayed = sp.csr_matrix((weight, (cust_code, item_code)), shape=shape)
    decayed.sum_duplicates()
    # latest purchase per (customer, item): the last row of each pair in (customer, item, day) order
    order = purchases.by_pair
    rows, cols = cust_code[order], item_code[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    last_day = sp.csr_matrix((purchases.day[order][last], (rows[last], cols[last])), shape=shape)
    return index, counts.tocsr(), last_day.tocsr(), decayed.tocsr()


def popularity_of(
    purchases: Purchases | EncodedPurchases, items: np.ndarray, *, as_of_day: float
) -> np.ndarray:
    """Share of the customers active in the last POPULARITY_DAYS who bought each item then."""
    recent = _encoded(purchases, items).between(as_of_day - POPULARITY_DAYS, as_of_day)
    if not len(recent):
        return np.zeros(len(items))
    # one buyer per (customer, item): the first row of each pair in (customer, item, day) order
    rows, cols = recent.customer[recent.by_pair], recent.item[recent.by_pair]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    buyers = np.bincount(cols[first], minlength=len(items)).astype(np.float64)
    return buyers / (1 + np.count_nonzero(rows[1:] != rows[:-1]))


def cooccurrence_similarity(counts: sp.csr_matrix) -> np.ndarray:
    """Item-item cosine similarity of who bought what (binary), diagonal zero."""
    binary = (counts > 0).astype(np.float64)
    co = np.asarray((binary.T @ binary).todense(), dtype=np.float64)
    norm = np.sqrt(np.diag(co))
    sim = np.divide(co, np.outer(norm, norm), out=np.zeros_like(co), where=np.outer(norm, norm) > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


def fit_als(counts: sp.csr_matrix, spec: Spec, *, seed: int) -> np.ndarray:
    """Item factors of implicit's ALS on confidence `alpha x counts` (CPU, one BLAS thread)."""
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    factors = max(1, min(spec.factors, counts.shape[1] - 1))
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, not BLAS's
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=spec.regularization,
            iterations=spec.iterations,
            random_state=seed,
            use_gpu=False,
        )
        model.fit((counts * spec.alpha).astype(np.float32).tocsr(), show_progress=False)
    return np.asarray(model.item_factors)


def fit_recommender(
    purchases: Purchases | EncodedPurchases,
    *,
    spec: Spec,
    items: np.ndarray,
    as_of_day: float,
    horizon_days: int,
    top_k: int,
    level: str = "category",
    seed: int = 0,
    features: tuple[str, ...] = (),
    parts: dict[tuple, Any] | None = None,
) -> Recommender:
    """Fit `spec` on the purchases before `as_of_day` (the histories it keeps are as of then). Fitting
    several candidates on the same purchases: encode them once (`EncodedPurchases.encode`) and pass one
    `parts` dict to every fit, which then share the item-level parts of each cut (see `_fit_parts`)."""
    if spec.name not in CANDIDATES:
        raise ValueError(f"unknown recommender {spec.name!r}; expected one of {', '.join(CANDIDATES)}")
    purchases = _encoded(purchases, items)
    common = dict(
        items=items,
        horizon_days=horizon_days,
        top_k=top_k,
        level=level,
        seed=seed,
        features=features,
        parts=parts,
    )
    model = _fit_parts(purchases, spec=spec, as_of_day=as_of_day, **common)
    if spec.name == "rerank":
        # trained on the horizon before the clock: candidates as of its start, labels = what was bought in it
        earlier = _fit_parts(purchases, spec=spec, as_of_day=as_of_day - horizon_days, **common)
        model.ranker = fit_ranker(earlier, purchases.between(as_of_day - horizon_days, as_of_day), seed=seed)
    return model


def fit_ranker(
    model: Recommender, window: Purchases | EncodedPurchases, *, seed: int, min_customers: int = 20
) -> Any:
    """LightGBM LambdaRank over `model`'s pair features of the customers it knows who bought in `window`,
    each customer one query, relevance 1 for the items bought. None with fewer than `min_customers`."""
    import lightgbm as lgb

    ids, relevant = relevant_matrix(window, model.items)
    rows = model.rows_of(ids)
    known = rows >= 0
    if known.sum() < min_customers:
        return None
    m = len(model.items)
    labels = relevant[known].astype(np.float64)
    params = {
        "objective": "lambdarank",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "lambdarank_truncation_level": m,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    data = lgb.Dataset(
        model.pair_features(rows[known]),
        label=labels.ravel(),
        group=[m] * int(known.sum()),
        feature_name=list(RERANK_FEATURES),
        free_raw_data=True,
    )
    return lgb.train(params, data, num_boost_round=100)


def _fit_parts(
    purchases: EncodedPurchases,
    *,
    spec: Spec,
    items: np.ndarray,
    as_of_day: float,
    horizon_days: int,
    top_k: int,
    level: str,
    seed: int,
    features: tuple[str, ...],
    parts: dict[tuple, Any] | None,
) -> Recommender:
    """The candidate's own parts fitted on the purchases before `as_of_day` (no ranker). The item-level
    parts (popularity, similarity, ALS item factors) depend on the cut and not on the half-life or the
    hybrid's weight: with `parts` they are fitted once per cut and shared by every candidate."""

    def shared(key: tuple, make):  # type: ignore[no-untyped-def]
        if parts is None:
            return make()
        if key not in parts:
            parts[key] = make()
        return parts[key]

    past = purchases.before(as_of_day)
    index, counts, last_day, decayed = _matrices(
        past, as_of_day=as_of_day, half_life_days=spec.half_life_days
    )
    model = Recommender(
        spec=spec,
        items=np.asarray(items, dtype=object),
        level=level,
        horizon_days=horizon_days,
        top_k=top_k,
        as_of_day=as_of_day,
        customers=index,
        counts=counts,
        last_day=last_day,
        decayed=decayed,
        popularity=shared(("popularity", as_of_day), lambda: popularity_of(past, items, as_of_day=as_of_day)),
        features=features,
        metadata={"model": spec.name, **{f"spec.{k}": v for k, v in spec.params().items()}},
    )
    if spec.name.endswith("cooccurrence") or spec.name == "rerank":
        model.similarity = shared(("similarity", as_of_day), lambda: cooccurrence_similarity(counts))
    if spec.name.endswith("als") or spec.name == "rerank":
        als = (spec.factors, spec.regularization, spec.alpha, spec.iterations, seed)
        model.item_factors = shared(("als", as_of_day, *als), lambda: fit_als(counts, spec, seed=seed))
    return model


# ------------------------------------------------------------------------------------------ metrics
def relevant_matrix(window: Purchases | EncodedPurchases, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The customers who bought a catalog item in an evaluation window (ids, sorted) and which items they
    bought there (a customers x items boolean matrix)."""
    window = _encoded(window, items)
    present = np.flatnonzero(np.bincount(window.customer, minlength=len(window.ids)))
    row_of = np.zeros(len(window.ids), dtype=np.int64)
    row_of[present] = np.arange(len(present))
    bought = np.zeros((len(present), len(items)), dtype=bool)
    bought[row_of[window.customer], window.item] = True
    return window.ids[present], bought


def ranking_metrics(
    ranked: np.ndarray,
    relevant: list[set[int]],
    *,
    k: int,
    n_items: int,
    bought: list[set[int]] | None = None,
) -> dict[str, float]:
    """recall@k (|top k ∩ bought| / |bought|), hit_rate@k, ndcg@k (binary gains), coverage (share of
    the catalog in any top-k list) and, with `bought` (items known before the cut), new_recall@k: recall
    of the items new to each customer by the top k among items they never bought."""
    return _ranking_metrics(
        ranked,
        _as_matrix(relevant, n_items),
        k=k,
        n_items=n_items,
        bought=None if bought is None else _as_matrix(bought, n_items),
    )


def _as_matrix(sets: list[set[int]], n_items: int) -> np.ndarray:
    """Item-index sets as a customers x items boolean matrix."""
    out = np.zeros((len(sets), n_items), dtype=bool)
    for i, members in enumerate(sets):
        out[i, list(members)] = True
    return out


def _ranking_metrics(
    ranked: np.ndarray, relevant: np.ndarray, *, k: int, n_items: int, bought: np.ndarray | None
) -> dict[str, float]:
    """`ranking_metrics` on boolean customers x items matrices, vectorised (a Python loop per customer
    cost a tenth of `train all` at 20k customers). Rows without a relevant item are left out."""
    top = ranked[:, :k]
    n_relevant = relevant.sum(axis=1)
    keep = n_relevant > 0
    got = np.take_along_axis(relevant, top, axis=1)[keep]
    n_relevant = n_relevant[keep]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.asarray([discounts[:m].sum() for m in range(k + 1)])[np.minimum(n_relevant, k)]
    gain = np.zeros(len(got))
    for j in range(got.shape[1]):  # left to right, as the per-customer sum added them
        gain = gain + got[:, j] * discounts[j]
    out = {
        f"recall_at_{k}": _mean(got.sum(axis=1) / n_relevant),
        f"hit_rate_at_{k}": _mean(got.any(axis=1).astype(np.float64)),
        f"ndcg_at_{k}": _mean(gain / ideal),
        "coverage": len(np.unique(top)) / n_items if n_items else float("nan"),
        "customers": float(len(got)),
    }
    if bought is not None:
        fresh = relevant[keep] & ~bought[keep]
        n_fresh = fresh.sum(axis=1)
        # each customer's top k among the items they never bought, in ranked order
        never = ~np.take_along_axis(bought[keep], ranked[keep], axis=1)
        new_top = never & (np.cumsum(never, axis=1) <= k)
        hits = (np.take_along_axis(fresh, ranked[keep], axis=1) & new_top).sum(axis=1)
        has_fresh = n_fresh > 0
        out[f"new_recall_at_{k}"] = _mean(hits[has_fresh] / n_fresh[has_fresh])
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def evaluate(
    model: Recommender, window: Purchases | EncodedPurchases, *, ks: tuple[int, ...]
) -> dict[str, float]:
    """Metrics of `model` on the purchases of the window that follows its `as_of_day`, at each k."""
    ids, rel = relevant_matrix(window, model.items)
    if not len(ids):
        return {}
    rows = model.rows_of(ids)
    ranked = np.argsort(-model.scores(rows), axis=1, kind="stable")
    n_items = len(model.items)
    known = np.flatnonzero(rows >= 0)
    history = model.counts[rows[known]]  # items each customer bought before the cut
    bought = np.zeros((len(ids), n_items), dtype=bool)
    bought[np.repeat(known, np.diff(history.indptr)), history.indices] = True
    out: dict[str, float] = {}
    for k in ks:
        out.update(_ranking_metrics(ranked, rel, k=k, n_items=n_items, bought=bought))
    out["coverage"] = _ranking_metrics(ranked, rel, k=model.top_k, n_items=n_items, bought=None)["coverage"]
    return out


def candidate_specs(*, half_lives: tuple[float, ...] = (30.0, 90.0, 365.0)) -> list[Spec]:
    """The candidates tried on validation: baselines, collaborative models and hybrids."""
    specs = [Spec("popularity")]
    specs += [Spec("buy_again", half_life_days=h) for h in half_lives]
    specs += [Spec("cooccurrence"), Spec("als")]
    specs += [Spec("hybrid_cooccurrence", weight=w) for w in (0.25, 0.5, 1.0)]
    specs += [Spec("hybrid_als", weight=w) for w in (0.25, 0.5, 1.0)]
    specs += [Spec("rerank")]
    return specs

"""Customer segmentation: robust scaling + k-means over BUYERS, persona names from the centroids' ranks
(`models.personas`), and segment ids 0..k-1 that stay put across retrains.

- Customers without an order (no `recency_days`, or `orders_lifetime` 0) are never clustered: they get
  segment id PROSPECT_ID (-1) and the persona `prospect` by rule, in `fit` and in `predict` alike.
- A retrain with the champion as `reference` (same features) keeps the champion's k, starts k-means
  from the champion's centroids (mapped into the new scaled space) and pairs the new clusters with the
  champion's by a Hungarian assignment on centroid distance in the CHAMPION's scaled space, so the same
  customers keep the same ids and names; ARI against the champion is then a gate criterion.

Scaling, per feature: missing -> training median; log1p when the column is non-negative and right-skewed
(money, counts); then (x - median) / IQR (std if the IQR is 0), clipped to +-CLIP so a handful of extreme
customers cannot claim a cluster of their own. Scoring is a nearest-centroid search in numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from models.classifier import ValidationFailed, _check_columns, _numeric_array, _numeric_column
from models.personas import PROSPECT, name_segments

CLIP = 5.0
SKEW_FOR_LOG = 1.0
SILHOUETTE_SAMPLE = 5000
PROSPECT_ID = -1  # segment id of customers without an order (persona `prospect`)


def buyer_mask(x: np.ndarray, features: list[str]) -> np.ndarray:
    """Rows with at least one order: `recency_days` known and `orders_lifetime` > 0 (where present).
    Without either feature every row counts as a buyer."""
    if len(x) == 1:  # one customer: the same test on two floats, without four numpy calls
        row = x[0]
        buyer = "recency_days" not in features or not math.isnan(row[features.index("recency_days")])
        if "orders_lifetime" in features:
            buyer = buyer and bool(row[features.index("orders_lifetime")] > 0)  # NaN > 0 is False
        return np.array([buyer])
    mask = np.ones(len(x), dtype=bool)
    if "recency_days" in features:
        mask &= ~np.isnan(x[:, features.index("recency_days")])
    if "orders_lifetime" in features:
        with np.errstate(invalid="ignore"):
            mask &= x[:, features.index("orders_lifetime")] > 0
    return mask


@dataclass
class RobustScaler:
    """Fitted per-feature transform: fill -> optional log1p -> (x - center) / scale -> clip."""

    fill: np.ndarray
    log: np.ndarray  # bool per feature
    center: np.ndarray
    scale: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.fill, x)
        x[:, self.log] = np.log1p(np.clip(x[:, self.log], 0, None))
        return np.clip((x - self.center) / self.scale, -CLIP, CLIP)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        x = z * self.scale + self.center
        x[:, self.log] = np.expm1(x[:, self.log])
        return x


def _fit_scaler(x: np.ndarray) -> RobustScaler:
    with np.errstate(all="ignore"):
        fill = np.nanmedian(x, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)
    filled = np.where(np.isnan(x), fill, x)
    skew = pd.DataFrame(filled).skew().fillna(0).to_numpy()
    log = (filled.min(axis=0) >= 0) & (skew > SKEW_FOR_LOG)
    t = np.where(log, np.log1p(np.clip(filled, 0, None)), filled)
    center = np.median(t, axis=0)
    iqr = np.quantile(t, 0.75, axis=0) - np.quantile(t, 0.25, axis=0)
    std = t.std(axis=0)
    scale = np.where(iqr > 0, iqr, np.where(std > 0, std, 1.0))
    return RobustScaler(fill=fill, log=log, center=center, scale=scale)


def _matrix(X: pd.DataFrame, features: list[str], *, where: str) -> np.ndarray:
    _check_columns(X, features, where=where)
    return (
        np.column_stack([_numeric_column(X[f], f) for f in features])
        if len(X)
        else np.empty((0, len(features)))
    )


def _nearest(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    # |z - c|^2 = |z|^2 - 2 z.c + |c|^2 without an (n, k, f) temporary.
    d = (z**2).sum(axis=1, keepdims=True) - 2 * z @ centroids.T + (centroids**2).sum(axis=1)
    return np.argmin(d, axis=1)


@dataclass
class SegmentationModel:
    """k-means segments with persona names. `segment_ids[i]` is the id of centroid row `i`."""

    features: list[str]
    k: int
    persona_names: dict[int, str]
    metadata: dict
    scaler: RobustScaler = field(repr=False, default=None)  # type: ignore[assignment]
    centroids: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    segment_ids: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The scaled matrix k-means works in."""
        return self.scaler.transform(_matrix(X, self.features, where="segmentation input"))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Segment id per row (PROSPECT_ID for customers without an order)."""
        return self._predict(_matrix(X, self.features, where="segmentation input"))

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """`predict` from feature name -> numpy array (the serving path; no DataFrame to build)."""
        missing = [f for f in self.features if f not in columns]
        if missing:
            raise ValidationFailed(f"segmentation input: missing column(s) {missing}")
        arrays = [np.asarray(columns[f]) for f in self.features]
        if len(arrays[0]) == 1 and all(a.dtype.kind in "fiub" for a in arrays):
            # one customer: the 1 x f matrix straight from the values (float() casts as astype does)
            return self._predict(np.array([[float(a[0]) for a in arrays]], dtype=np.float64))
        return self._predict(
            np.column_stack([_numeric_array(a, f) for a, f in zip(arrays, self.features, strict=True)])
        )

    def _predict(self, x: np.ndarray) -> np.ndarray:
        buyers = buyer_mask(x, self.features)
        out = np.full(len(x), PROSPECT_ID, dtype=np.int64)
        if buyers.any():
            out[buyers] = self.segment_ids[_nearest(self.scaler.transform(x[buyers]), self.centroids)]
        return out

    def personas(self, segment_ids: np.ndarray) -> np.ndarray:
        """Persona name per segment id (`prospect` for PROSPECT_ID)."""
        ids = np.asarray(segment_ids)
        names = {**self.persona_names, PROSPECT_ID: PROSPECT}
        unknown = sorted(set(ids.tolist()) - set(names))
        if unknown:
            raise ValidationFailed(
                f"segment id(s) {unknown} are not in this model ({sorted(self.persona_names)})"
            )
        return np.array([names[int(i)] for i in ids], dtype=object)

    def profiles(self) -> pd.DataFrame:
        """One row per segment id: persona, training size and share, and the centroid in original units
        (a log1p-scaled feature shows the back-transformed value, i.e. a geometric-mean-like centre)."""
        original = self.scaler.inverse(self.centroids)
        frame = pd.DataFrame(original, columns=self.features)
        frame.insert(0, "segment_id", self.segment_ids.astype(int))
        frame.insert(1, "persona", [self.persona_names[int(i)] for i in self.segment_ids])
        sizes = self.metadata.get("sizes", {})
        frame.insert(2, "n", [int(sizes.get(str(int(i)), 0)) for i in self.segment_ids])
        total = max(frame["n"].sum(), 1)
        frame.insert(3, "share", frame["n"] / total)
        return frame.sort_values("segment_id").set_index("segment_id")


def _kmeans(z: np.ndarray, k: int, *, seed: int, n_init: int):
    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z)


def _silhouette(z: np.ndarray, labels: np.ndarray, *, seed: int) -> float:
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= len(labels):
        return float("nan")
    size = min(len(labels), SILHOUETTE_SAMPLE)
    return float(silhouette_score(z, labels, sample_size=size, random_state=seed))


def _choose_k(z: np.ndarray, k_range: tuple[int, int], *, seed: int) -> tuple[int, dict[str, float]]:
    lo, hi = k_range
    if lo < 2 or hi < lo:
        raise ValidationFailed(f"k_range must be (lo, hi) with 2 <= lo <= hi, not {k_range}")
    rng = np.random.default_rng(seed)
    sample = z[rng.choice(len(z), size=min(len(z), SILHOUETTE_SAMPLE), replace=False)]
    scores = {}
    for k in range(lo, min(hi, len(sample) - 1) + 1):
        scores[str(k)] = _silhouette(sample, _kmeans(sample, k, seed=seed, n_init=4).labels_, seed=seed)
    best = max(scores, key=lambda key: (scores[key], -int(key)))  # ties -> fewer segments
    return int(best), scores


def _to_space(target: RobustScaler, source: RobustScaler, centroids: np.ndarray) -> np.ndarray:
    """Centroids of one model's scaled space expressed in another's (through original units)."""
    return target.transform(source.inverse(centroids.copy()))


def _match_centroids(
    *, reference: SegmentationModel, scaler: RobustScaler, centroids: np.ndarray
) -> dict[int, int]:
    """{new centroid row: reference segment id}: Hungarian assignment minimising the squared distance
    between the new centroids and the reference's, both in the REFERENCE's scaled space."""
    from scipy.optimize import linear_sum_assignment

    ref_ids = [int(i) for i in reference.segment_ids]
    new_in_ref = _to_space(reference.scaler, scaler, centroids)
    cost = ((new_in_ref[:, None, :] - reference.centroids[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return {int(r): ref_ids[c] for r, c in zip(rows, cols, strict=True)}


def _match_co_assignment(
    *,
    reference: SegmentationModel,
    reference_X: pd.DataFrame,
    features: list[str],
    scaler: RobustScaler,
    centroids: np.ndarray,
) -> dict[int, int]:
    """{new centroid row: reference segment id} when the features differ: which new cluster holds most
    of each reference segment's customers (Hungarian assignment on the overlap counts)."""
    from scipy.optimize import linear_sum_assignment

    ref_ids = [int(i) for i in reference.segment_ids]
    ref_labels = reference.predict(reference_X)
    x = _matrix(reference_X, features, where="reference_X")
    keep = (ref_labels != PROSPECT_ID) & buyer_mask(x, features)
    new_rows = _nearest(scaler.transform(x[keep]), centroids)
    overlap = np.zeros((len(centroids), len(ref_ids)))
    col = {sid: j for j, sid in enumerate(ref_ids)}
    np.add.at(overlap, (new_rows, [col[int(s)] for s in ref_labels[keep]]), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return {int(r): ref_ids[c] for r, c in zip(rows, cols, strict=True) if overlap[r, c] > 0}


def fit_segmentation(
    *,
    X: pd.DataFrame,
    features: list[str],
    k: int | None,
    k_range: tuple[int, int],
    seed: int,
    reference: SegmentationModel | None = None,
    reference_X: pd.DataFrame | None = None,
) -> SegmentationModel:
    """Fit robust scaling + k-means on the buyers of `X[features]` (see module doc). k is `k`, or the
    best silhouette (on a sample) in `k_range` (inclusive), or, with a `reference` on the same features,
    the reference's k (unless `k` is given). Segments are named by `models.personas` rules; segments
    matched to the reference keep its ids and names; ids are 0..k-1."""
    if not features or len(set(features)) != len(features):
        raise ValidationFailed(f"segmentation: features must be non-empty and unique, got {features}")
    x_all = _matrix(X, features, where="segmentation training data")
    buyers = buyer_mask(x_all, features)
    x = x_all[buyers]
    scaler = _fit_scaler(x)
    z = scaler.transform(x)
    same_features = reference is not None and list(reference.features) == list(features)
    k_scores: dict[str, float] = {}
    if k is None and same_features:
        k = int(reference.k)  # type: ignore[union-attr]
    if k is None:
        k, k_scores = _choose_k(z, k_range, seed=seed)
    if k < 2 or k >= len(z):
        raise ValidationFailed(f"segmentation: k={k} needs 2 <= k < number of buyers ({len(z)})")
    if same_features and int(reference.k) == k:  # type: ignore[union-attr]
        # warm start from the champion: the retrain moves its centroids rather than reshuffling them
        from sklearn.cluster import KMeans

        init = _to_space(scaler, reference.scaler, reference.centroids)  # type: ignore[union-attr]
        km = KMeans(n_clusters=k, init=init, n_init=1, random_state=seed).fit(z)
    else:
        km = _kmeans(z, k, seed=seed, n_init=10)
    centroids = km.cluster_centers_
    raw = km.labels_
    counts = np.bincount(raw, minlength=k)

    meta: dict = {}
    pairs: dict[int, int] = {}
    if reference is not None:
        if same_features:
            pairs, meta["match_method"] = (
                _match_centroids(reference=reference, scaler=scaler, centroids=centroids),
                "hungarian_centroids_in_champion_space",
            )
        elif reference_X is not None:
            pairs, meta["match_method"] = (
                _match_co_assignment(
                    reference=reference,
                    reference_X=reference_X,
                    features=features,
                    scaler=scaler,
                    centroids=centroids,
                ),
                "co_assignment",
            )
        else:
            raise ValidationFailed(
                "segmentation: the reference model uses other features "
                f"({reference.features}); pass reference_X to match by co-assignment"
            )
        pairs = {row: sid for row, sid in pairs.items() if sid < k}  # ids stay 0..k-1
        meta["matched"] = {str(sid): int(row) for row, sid in pairs.items()}
    fixed = {row: reference.persona_names[sid] for row, sid in pairs.items()} if reference else {}
    # each segment is placed by its median customer (per feature): robust to a tail of outliers that
    # would drag a mean-centroid's recency away from where most of its customers are
    medians = np.vstack([np.median(z[raw == r], axis=0) if counts[r] else centroids[r] for r in range(k)])
    names = name_segments(
        medians, features, population_z=z, fixed=fixed, centroids_original=scaler.inverse(medians.copy())
    )
    free = iter(sorted(set(range(k)) - set(pairs.values())))
    ids_by_row = dict(pairs)
    for r in np.argsort(-counts, kind="stable"):  # unmatched clusters: free ids, biggest first
        if int(r) not in ids_by_row:
            ids_by_row[int(r)] = next(free)

    segment_ids = np.array([ids_by_row[r] for r in range(k)], dtype=np.int64)
    meta.update(
        {
            "seed": seed,
            "k": int(k),
            "k_range": list(k_range),
            "silhouette_by_k": k_scores,
            "n_train": int(len(z)),
            "n_prospects_excluded": int((~buyers).sum()),
            "sizes": {str(int(segment_ids[r])): int(counts[r]) for r in range(k)},
            "inertia": float(km.inertia_),
            "log_features": [f for f, flag in zip(features, scaler.log, strict=True) if flag],
        }
    )
    return SegmentationModel(
        features=list(features),
        k=int(k),
        persona_names={int(segment_ids[r]): names[r] for r in range(k)},
        metadata=meta,
        scaler=scaler,
        centroids=centroids,
        segment_ids=segment_ids,
    )


def segmentation_metrics(model: SegmentationModel, X: pd.DataFrame) -> dict:
    """On the buyers of `X`: silhouette (on a sample of at most 5,000 rows, in the model's scaled
    space), segment sizes and shares (keyed by segment id as text), smallest and largest share, k and n."""
    x = _matrix(X, model.features, where="segmentation input")
    z = model.scaler.transform(x[buyer_mask(x, model.features)])
    labels = model.segment_ids[_nearest(z, model.centroids)]
    ids, counts = np.unique(labels, return_counts=True)
    sizes = {str(int(i)): int(c) for i, c in zip(ids, counts, strict=True)}
    for sid in model.persona_names:
        sizes.setdefault(str(sid), 0)
    n = int(len(labels))
    shares = {key: (v / n if n else 0.0) for key, v in sizes.items()}
    return {
        "silhouette": _silhouette(z, labels, seed=int(model.metadata.get("seed", 0))),
        "k": int(model.k),
        "n": n,
        "sizes": sizes,
        "shares": shares,
        "min_share": min(shares.values()),
        "max_share": max(shares.values()),
    }


def adjusted_rand(a_ids, b_ids) -> float:
    """Adjusted Rand index between two labelings of the same rows (1 = identical partitions)."""

    a, b = np.asarray(a_ids).ravel(), np.asarray(b_ids).ravel()
    if a.shape != b.shape:
        raise ValidationFailed(f"adjusted_rand: labelings differ in length ({a.size} vs {b.size})")
    return float(adjusted_rand_score(a, b))

"""`persona train recommend`: next best category (or product) from the clean orders.

Time-respecting: with horizon H and the data's clock `as_of`, every candidate is fitted on the purchases
before `as_of - 2H` and judged on the purchases of the next H days (validation: the candidate is chosen
on NDCG@k there); the chosen one and the baselines (popularity, buy-again) are fitted again on the
purchases before `as_of - H` and measured on the last H days (test: the gate). The version served is the
chosen candidate fitted on everything up to `as_of`, so its histories are the latest the data has.
The gate promotes it only if its test recall@k is no worse than either baseline's and beats the champion's
(the champion's candidate refitted on the same window, so both are judged on unseen purchases).

The registered version holds no customer: the purchases it scores from are written to
`training.recommend.history` (artifacts.recommend_history), which serving attaches to whichever version is
champion and erasure rewrites.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from artifacts.recommend_history import write_history
from artifacts.registry import load_version
from core.errors import StageSkipped
from training.jobs import TrainOutcome, current_champion, gate_section, register_gated
from training.registry import GateDecision

if TYPE_CHECKING:
    from configs.settings import Settings
    from models.recommend import EncodedPurchases, Purchases, Recommender, Spec

log = logging.getLogger(__name__)
KIND = "recommend"
KS = (1, 3, 5, 10)
BASELINES = ("popularity", "buy_again")


@dataclass
class RecommendData:
    """Purchases of consenting customers (encoded once against the catalog for every fit and evaluation:
    the strings as read are let go), the catalog and the cuts (epoch days)."""

    encoded: EncodedPurchases
    items: np.ndarray
    level: str
    as_of: pd.Timestamp
    horizon_days: int
    parts: dict[tuple, Any] = field(default_factory=dict)  # item-level parts per cut, shared by the fits

    @property
    def as_of_day(self) -> float:
        from models.recommend import epoch_day

        return epoch_day(self.as_of)

    @property
    def test_cut(self) -> float:
        return self.as_of_day - self.horizon_days

    @property
    def valid_cut(self) -> float:
        return self.as_of_day - 2 * self.horizon_days


def recommend_data(settings: Settings) -> RecommendData:
    """Purchases (completed, not cancelled or returned) at the configured level; skipped with the reason
    when the orders name no categories and no small product catalog (e.g. CDNOW)."""
    from features.clock import clean_as_of
    from models.recommend import EncodedPurchases

    cfg = settings.training.recommend
    level, purchases = _purchases(settings)
    items = np.asarray(sorted(pd.unique(purchases.item)), dtype=object)
    # the fits read the codes only: the strings as read (an object per row) are let go here
    encoded = EncodedPurchases.encode(purchases, items)
    del purchases
    data = RecommendData(encoded, items, level, clean_as_of(settings), cfg.horizon_days)
    before_valid = int(np.count_nonzero(encoded.day < data.valid_cut))
    if len(items) < 2 or not before_valid:
        raise StageSkipped(
            f"recommend model skipped: {len(items)} {level}(s), {before_valid} purchases "
            f"before the validation cut (as_of - 2 x {data.horizon_days} days)",
            hint="training.recommend.horizon_days needs about 3 horizons of orders",
        )
    return data


def _purchases(settings: Settings) -> tuple[str, Purchases]:
    """The level and the purchases of consenting customers at it (the clean tables are read here and
    let go on return)."""
    from features.build import read_clean
    from models.recommend import Purchases

    cfg = settings.training.recommend
    orders = read_clean(settings, "orders")
    customers = read_clean(settings, "customers")
    withdrawn = set(customers.loc[customers["consent_profiling"].eq(False), "customer_id"])
    level, frame, item = None, None, None
    has_category = "category" in orders and orders["category"].notna().any()
    if cfg.level in ("auto", "category") and has_category:
        kept = orders[~orders["is_cancelled"].astype(bool) & ~orders["is_returned"].astype(bool)]
        level, frame, item = "category", kept[kept["category"].notna()], "category"
    elif cfg.level in ("auto", "product"):
        lines = read_clean(settings, "order_lines")
        if lines is not None and lines["product_id"].notna().any():
            bought = lines[~lines["is_return"].astype(bool) & lines["product_id"].notna()]
            n_products = bought["product_id"].nunique()
            if n_products <= cfg.max_products:
                level, frame, item = "product", bought, "product_id"
            else:
                raise StageSkipped(
                    f"recommend model not configured: {n_products} products exceed "
                    f"training.recommend.max_products ({cfg.max_products}) and the orders name no category"
                )
    if frame is None or level is None or item is None:
        raise StageSkipped(
            "recommend model not configured: the orders name no category (sources.orders.columns.category) "
            "and no products (layout: order_lines with product_id)"
        )
    frame = frame[~frame["customer_id"].isin(withdrawn)]
    return level, Purchases.from_frame(frame, item=item)


def choose_spec(
    data: RecommendData, *, top_k: int, seed: int
) -> tuple[Spec, Spec, dict[str, dict[str, float]], str]:
    """Fit every candidate before the validation cut and pick the best NDCG@k on the next horizon.
    Returns the chosen spec, the best buy-again spec (the baseline), validation metrics and why."""
    from models.recommend import RERANK_MAX_ITEMS, Spec, candidate_specs, evaluate, fit_recommender

    window = data.encoded.between(data.valid_cut, data.test_cut)
    ks = _ks(data, top_k)
    scored: dict[str, tuple[Spec, dict[str, float]]] = {}

    def run(spec: Spec) -> float:
        model = fit_recommender(
            data.encoded,
            spec=spec,
            items=data.items,
            as_of_day=data.valid_cut,
            horizon_days=data.horizon_days,
            top_k=top_k,
            level=data.level,
            seed=seed,
            parts=data.parts,
        )
        metrics = evaluate(model, window, ks=ks)
        scored[_label(spec)] = (spec, metrics)
        return metrics.get(f"ndcg_at_{top_k}", float("nan"))

    specs = [s for s in candidate_specs() if s.name != "rerank" or len(data.items) <= RERANK_MAX_ITEMS]
    combined = ("hybrid_cooccurrence", "hybrid_als", "rerank")
    for spec in specs:
        if spec.name not in combined:
            run(spec)
    # the hybrids and the re-ranker use the buy-again half-life validation preferred
    buy_again = max(
        (s for s, _ in scored.values() if s.name == "buy_again"),
        key=lambda s: np.nan_to_num(scored[_label(s)][1].get(f"ndcg_at_{top_k}", np.nan), nan=-1.0),
    )
    best_half = buy_again.half_life_days
    for spec in specs:
        if spec.name in combined:
            run(Spec(spec.name, half_life_days=best_half, weight=spec.weight))
    key = f"ndcg_at_{top_k}"
    best = max(scored, key=lambda name: np.nan_to_num(scored[name][1].get(key, float("nan")), nan=-1.0))
    why = (
        f"{best}: validation NDCG@{top_k} {scored[best][1][key]:.4f} ("
        + ", ".join(f"{n} {m.get(key, float('nan')):.4f}" for n, (_, m) in scored.items() if n != best)
        + ")"
    )
    return scored[best][0], buy_again, {n: m for n, (_, m) in scored.items()}, why


def _label(spec: Spec) -> str:
    if spec.name == "buy_again":
        return f"buy_again(half-life {spec.half_life_days:g}d)"
    if spec.name.startswith("hybrid"):
        return f"{spec.name}(w {spec.weight:g}, half-life {spec.half_life_days:g}d)"
    if spec.name == "rerank":
        return f"rerank(lightgbm lambdarank, half-life {spec.half_life_days:g}d)"
    return spec.name


def _ks(data: RecommendData, top_k: int) -> tuple[int, ...]:
    return tuple(sorted({k for k in (*KS, top_k) if k <= len(data.items)}))


def _fit_at(
    data: RecommendData, spec: Spec, *, cut: float, top_k: int, seed: int, features=()
) -> Recommender:
    from models.recommend import fit_recommender

    return fit_recommender(
        data.encoded,
        spec=spec,
        items=data.items,
        as_of_day=cut,
        horizon_days=data.horizon_days,
        top_k=top_k,
        level=data.level,
        seed=seed,
        features=tuple(features),
        parts=data.parts,
    )


def gate_recommend(
    *,
    challenger: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
    metric: str,
    margin: float,
    champion_version: str | None,
) -> GateDecision:
    """Promote if `metric` (recall@k on the test window) is no worse than every baseline's and beats the
    champion's by more than `margin` (the first model needs only the baselines). Pure."""
    ours = challenger.get(metric, float("nan"))
    compared = {
        "metric": metric,
        "challenger": ours,
        **{name: m.get(metric) for name, m in baselines.items()},
        "champion": None if champion is None else champion.get(metric),
        "margin": margin,
    }
    if not np.isfinite(ours):
        return GateDecision(
            False, f"challenger has no {metric} on the test window", compared, champion_version
        )
    for name, m in baselines.items():
        theirs = m.get(metric, float("nan"))
        if np.isfinite(theirs) and ours < theirs:
            return GateDecision(
                False,
                f"{metric} {ours:.4f} is worse than the {name} baseline's {theirs:.4f}",
                compared,
                champion_version,
            )
    if champion is None:
        return GateDecision(True, f"first model: {metric} {ours:.4f} no worse than the baselines", compared)
    theirs = champion.get(metric, float("nan"))
    if not np.isfinite(theirs):
        return GateDecision(
            True,
            f"champion v{champion_version} could not be scored on this window",
            compared,
            champion_version,
        )
    if ours > theirs + margin:
        return GateDecision(
            True,
            f"{metric} {ours:.4f} beats champion v{champion_version}'s {theirs:.4f}",
            compared,
            champion_version,
        )
    return GateDecision(
        False,
        f"{metric} {ours:.4f} does not beat champion v{champion_version}'s {theirs:.4f} by {margin}",
        compared,
        champion_version,
    )


def _champion_metrics(settings: Settings, data: RecommendData, version: str, *, top_k: int, seed: int):
    """The champion's candidate refitted before the test cut and measured on the test window."""
    from models.recommend import evaluate

    try:
        spec = load_version(settings, KIND, version).bundle.spec
        model = _fit_at(data, spec, cut=data.test_cut, top_k=top_k, seed=seed)
        return evaluate(
            model, data.encoded.between(data.test_cut, data.as_of_day + 1e-9), ks=_ks(data, top_k)
        )
    except Exception as exc:  # an unloadable champion must not block a new model: record it instead
        log.warning("champion v%s of %s could not be scored: %s", version, KIND, exc)
        return None


def train_recommend(settings: Settings, *, promote: bool = True, store: Any = None) -> TrainOutcome:
    """Choose, evaluate, log and register the recommender; gate it and (with `promote`) move `champion`."""
    from features.feast_io import get_store, service_features
    from models.recommend import Spec, evaluate
    from training.trainsets import choose_service

    cfg = settings.training.recommend
    seed = settings.training.seed
    data = recommend_data(settings)
    store = store or get_store(settings)
    service = choose_service(settings, KIND, store=store)
    features = service_features(store, service)
    spec, buy_again, valid_all, why = choose_spec(data, top_k=cfg.top_k, seed=seed)
    log.info("recommend candidate: %s", why)
    ks = _ks(data, cfg.top_k)
    test_window = data.encoded.between(data.test_cut, data.as_of_day + 1e-9)  # as_of's own day included
    contenders = {"candidate": spec, "popularity": Spec("popularity"), "buy_again": buy_again}
    test = {
        name: evaluate(_fit_at(data, s, cut=data.test_cut, top_k=cfg.top_k, seed=seed), test_window, ks=ks)
        for name, s in contenders.items()
    }
    metric = f"recall_at_{cfg.top_k}"
    champion = current_champion(
        settings,
        KIND,
        score=lambda version: _champion_metrics(settings, data, version, top_k=cfg.top_k, seed=seed),
    )
    champ = champion.metrics
    baselines = {n: test[n] for n in BASELINES if contenders[n] != spec}
    decision = gate_recommend(
        challenger=test["candidate"],
        baselines=baselines,
        champion=champ,
        metric=metric,
        margin=settings.training.gate.margin,
        champion_version=champion.version,
    )
    served_cut = data.as_of_day + 1e-9  # as_of's own day included
    served = _fit_at(data, spec, cut=served_cut, top_k=cfg.top_k, seed=seed, features=features)
    served.metadata.update(candidate_selection=why, as_of=data.as_of.isoformat())
    # The histories go to their own table (erasure rewrites it), the registered model holds no customer.
    history = write_history(settings, data.encoded.decode(), as_of_day=served_cut)
    registered = served.without_history()
    window = {
        "level": data.level,
        "items": len(data.items),
        "horizon_days": data.horizon_days,
        "valid_cut": _iso(data.valid_cut),
        "test_cut": _iso(data.test_cut),
        "as_of": data.as_of.isoformat(),
        "test_customers": int(test["candidate"].get("customers", 0)),
    }
    logged = {
        **{f"test_{k}": v for k, v in test["candidate"].items()},
        **{f"{n}_test_{k}": v for n in BASELINES for k, v in test[n].items()},
        **{f"valid_{k}": v for k, v in valid_all[_label(spec)].items()},
        **({f"champion_test_{k}": v for k, v in champ.items()} if champ else {}),
    }
    curves = {f"candidate ({_label(spec)})": test["candidate"], **{n: test[n] for n in BASELINES}}

    def artifacts(out: Path) -> dict[str, Path]:
        from training.mlflow_io import recall_at_k_plot

        return recall_at_k_plot(curves=curves, ks=ks, out_dir=out)

    table = pd.DataFrame({**curves, **({"champion (refitted)": champ} if champ else {})})
    example = pd.DataFrame({"customer_id": ["example-customer"]})  # no real id in MLflow
    return register_gated(
        settings,
        kind=KIND,
        service=service,
        model=registered,
        decision=decision,
        champion=champion,
        promote=promote,
        metrics=test["candidate"],
        logged=logged,
        extra={
            "baselines": {n: test[n] for n in BASELINES},
            "champion": champ,
            "selection": why,
            "k": cfg.top_k,
        },
        window=window,
        input_example=example,
        make_artifacts=artifacts,
        # fitted on purchases (a customer x item matrix), not on a Feast training frame: no dataset input
        datasets={},
        report_sections=[
            ("Held-out test window (the last horizon)", table),
            ("Validation (candidate chosen on NDCG@k)", pd.DataFrame(valid_all)),
            ("Data window", window),
            gate_section(decision, champion),
        ],
        extra_params={
            "model": spec.name,
            "candidate_selection": why,
            "history_table": str(history),
            **served.metadata,
        },
    )


def _iso(day: float) -> str:
    return (pd.Timestamp(0, tz="UTC") + pd.Timedelta(days=day)).isoformat()

"""Customer lifetime value on CDNOW with the classic protocol: calibrate on 1997-01-01..1997-09-30, predict
each customer's spend in 1997-10-01..1998-06-30 (39 weeks), same-day purchases merged.

Run: `BENCH=clv make bench` (or `python -m bench.bench_clv`). Writes bench/results/clv.md.

The data comes in through `configs/datasets/cdnow.yaml` and the ordinary ingest (no CDNOW code here);
features are Persona's point-in-time transaction features. Nothing after the calibration end is seen by
any fit: the LightGBM models train on a snapshot four months before it (labels: the next 61 days),
are early-stopped, total-calibrated and chosen on a snapshot two months before it (labels: the last 61
days of calibration), and predict the 273-day holdout from the features at 1997-10-01 (the plain
Tweedie model's 61-day prediction scaled by 273/61; the offset model through its BG/NBD offset at 273
days). The model "shipped" is the one with the lowest validation MAE, chosen before the holdout is read.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "clv.md"
ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "datasets" / "cdnow.yaml"

CALIBRATION_END = pd.Timestamp("1997-10-01", tz="UTC")  # first instant of the holdout
HOLDOUT_END = pd.Timestamp("1998-07-01", tz="UTC")
INNER_HORIZON_DAYS = 61
# Measured independently (issue 13) and the goal set there.
REFERENCE = {
    "BG/NBD x Gamma-Gamma (independent)": {"mae": 32.7, "total_ratio": 0.83, "capture_top_decile": 0.516},
    "LightGBM Tweedie (independent)": {"mae": 37.2, "total_ratio": 1.11, "capture_top_decile": 0.515},
}
GOAL = "MAE <= 31, top-10% capture >= 0.53, predicted/actual total within 0.90..1.10"
# Transaction features the LightGBM models use: those CDNOW carries information for (no discounts,
# returns or categories in the file).
UNINFORMATIVE = {"category_breadth_365d", "return_rate_365d", "discount_rate_365d"}


def merge_same_day(orders: pd.DataFrame) -> pd.DataFrame:
    """One purchase per customer and calendar day (UTC): amounts, discounts and quantities summed; the
    protocol of the BG/NBD literature, where a day's several rows are one shopping trip."""
    orders = orders.assign(customer_id=orders["customer_id"].astype(str))
    day = orders["order_ts"].dt.floor("D")
    keys = [orders["customer_id"], day]
    merged = (
        orders.assign(order_ts=day)
        .groupby(keys, sort=True, as_index=False, observed=True)
        .agg(
            order_id=("order_id", "first"),
            customer_id=("customer_id", "first"),
            order_ts=("order_ts", "first"),
            amount=("amount", "sum"),
            discount=("discount", "sum"),
            quantity=("quantity", "sum"),
            category=("category", "first"),
            is_returned=("is_returned", "all"),
            is_cancelled=("is_cancelled", "all"),
        )
    )
    return merged


def load_cdnow() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Clean orders and customers of CDNOW through its dataset configuration and the ordinary ingest."""
    from configs.settings import load_settings
    from features.ingest import ingest_frames, read_sources, resolve_as_of

    settings = load_settings(CONFIG)
    raw = read_sources(settings)
    result = ingest_frames(
        raw, sources=settings.sources, identity=settings.identity, as_of=resolve_as_of(settings)
    )
    return result.frame("orders"), result.tables["customers"], result.report()


def spend_labels(
    orders: pd.DataFrame, frame: pd.DataFrame, *, start: pd.Timestamp, days: float
) -> np.ndarray:
    """Each row's kept-order spend in [start, start + days)."""
    end = start + pd.Timedelta(days=days)
    kept = ~(orders["is_returned"].astype(bool) | orders["is_cancelled"].astype(bool))
    window = orders[kept & (orders["order_ts"] >= start) & (orders["order_ts"] < end)]
    spend = window.groupby(window["customer_id"].astype(str), observed=True)["amount"].sum()
    return frame["customer_id"].astype(str).map(spend).fillna(0.0).to_numpy(dtype=np.float64)


def run(orders: pd.DataFrame, customers: pd.DataFrame, *, seed: int) -> dict:
    """Every model's holdout metrics (pure: frames in, numbers out)."""
    from dataclasses import replace

    from features.build import FEATURE_TABLES, compute_feature_tables
    from models.clv import fit_btyd_value, fit_clv_regressor, rate_value, value_metrics

    holdout_days = (HOLDOUT_END - CALIBRATION_END).days
    valid_t = CALIBRATION_END - pd.Timedelta(days=INNER_HORIZON_DAYS)
    train_t = valid_t - pd.Timedelta(days=INNER_HORIZON_DAYS)
    merged = merge_same_day(orders)
    built = compute_feature_tables(
        customers=customers,
        orders=merged,
        events=None,
        leads=None,
        snapshots=[train_t, valid_t, CALIBRATION_END],
        created=pd.Timestamp.now(tz="UTC"),
    )
    table = built.tables["customer_transactions"]
    # customers who have bought by the snapshot (the cohort's later starters are not yet customers)
    at = {
        t: table[(table["event_timestamp"] == t) & table["orders_lifetime"].gt(0)].reset_index(drop=True)
        for t in (train_t, valid_t, CALIBRATION_END)
    }
    train, valid, test = at[train_t], at[valid_t], at[CALIBRATION_END]
    train["spend"] = spend_labels(merged, train, start=train_t, days=INNER_HORIZON_DAYS)
    valid["spend"] = spend_labels(merged, valid, start=valid_t, days=INNER_HORIZON_DAYS)
    test["spend"] = spend_labels(merged, test, start=CALIBRATION_END, days=holdout_days)
    features = [f for f in FEATURE_TABLES["customer_transactions"] if f not in UNINFORMATIVE]

    out: dict[str, dict] = {}
    timings: dict[str, float] = {}

    def record(name: str, test_pred: np.ndarray, valid_pred: np.ndarray, seconds: float) -> None:
        out[name] = value_metrics(test["spend"], test_pred)
        inner = value_metrics(valid["spend"], valid_pred)
        out[name]["valid_mae"] = inner["mae"]
        out[name]["valid_total_ratio"] = inner["total_ratio"]
        timings[name] = seconds

    t0 = time.perf_counter()
    btyd = {t: fit_btyd_value(at[t], horizon_days=INNER_HORIZON_DAYS) for t in (train_t, valid_t)}
    btyd_test = fit_btyd_value(test, horizon_days=holdout_days)
    record(
        "BG/NBD x Gamma-Gamma",
        btyd_test.predict(test),
        btyd[valid_t].predict(valid),
        time.perf_counter() - t0,
    )
    rate = rate_value(horizon_days=holdout_days)
    record("naive rate", rate.predict(test), rate.predict(valid, INNER_HORIZON_DAYS), 0.0)

    common = dict(
        train=train, valid=valid, features=features, label="spend", horizon_days=INNER_HORIZON_DAYS, seed=seed
    )
    t0 = time.perf_counter()
    plain = fit_clv_regressor(**common)
    record(
        "LightGBM Tweedie",
        plain.predict(test) * holdout_days / INNER_HORIZON_DAYS,
        plain.predict(valid),
        time.perf_counter() - t0,
    )
    t0 = time.perf_counter()
    boosted = fit_clv_regressor(**common, offset=btyd[valid_t], train_offset=btyd[train_t])
    boosted_test = replace(boosted, offset=btyd_test)
    record(
        "LightGBM Tweedie on BG/NBD x GG offset",
        boosted_test.predict(test, holdout_days),
        boosted.predict(valid),
        time.perf_counter() - t0,
    )
    shipped = min(out, key=lambda k: out[k]["valid_mae"] if np.isfinite(out[k]["valid_mae"]) else np.inf)
    return {
        "metrics": out,
        "timings": timings,
        "shipped": shipped,
        "btyd": btyd_test.metadata,
        "rows": {"train": len(train), "valid": len(valid), "test": len(test)},
        "snapshots": {"train": train_t, "valid": valid_t, "test": CALIBRATION_END},
        "orders": {"rows": len(orders), "merged": len(merged)},
        "total_scale": {"LightGBM Tweedie": plain.scale, "on offset": boosted.scale},
        "best_iteration": {
            "plain": plain.metadata["best_iteration"],
            "on offset": boosted.metadata["best_iteration"],
        },
    }


def _meets(m: dict) -> str:
    ok = m["mae"] <= 31 and m["capture_top_decile"] >= 0.53 and 0.9 <= m["total_ratio"] <= 1.1
    return "yes" if ok else "no"


def render(result: dict, seed: int) -> str:
    rows = []
    for name, m in result["metrics"].items():
        mark = " (shipped: best validation MAE)" if name == result["shipped"] else ""
        rows.append(
            f"| {name}{mark} | **{m['mae']:.2f}** | {m['rmse']:.2f} | {m['total_ratio']:.3f} "
            f"| {m['capture_top_decile']:.3f} | {m['spearman_buyers']:.3f} | {m['valid_mae']:.3f} "
            f"| {_meets(m)} | {result['timings'][name]:.1f} |"
        )
    for name, ref in REFERENCE.items():
        rows.append(
            f"| {name} | {ref['mae']:.1f} | - | {ref['total_ratio']:.2f} | {ref['capture_top_decile']:.3f} "
            "| - | - | - | - |"
        )
    any_test = next(iter(result["metrics"].values()))
    b = result["btyd"]
    snaps = result["snapshots"]
    return "\n".join(
        [
            "## Customer lifetime value: CDNOW, classic protocol",
            "",
            "Command: `BENCH=clv make bench` (`python -m bench.bench_clv`); seed "
            f"{seed}; data read in place through `configs/datasets/cdnow.yaml` and the ordinary ingest, "
            f"{result['orders']['rows']:,} orders merged to {result['orders']['merged']:,} customer-days. "
            f"Holdout: each of the {result['rows']['test']:,} customers' spend in 1997-10-01..1998-06-30 "
            f"(mean {any_test['actual_mean']:.2f}, {any_test['buyer_rate']:.1%} buy; predicting 0 for "
            f"everyone scores MAE {any_test['actual_mean']:.2f}). LightGBM trains on the snapshot "
            f"{snaps['train'].date()} ({result['rows']['train']:,} customers, next 61 days), is "
            f"early-stopped, total-calibrated and compared on {snaps['valid'].date()} "
            f"({result['rows']['valid']:,} customers, next 61 days); nothing after 1997-09-30 is fitted on. "
            f"BG/NBD at 1997-10-01 (days): r={b['r']:.3f}, alpha={b['alpha']:.2f}, a={b['a']:.3f}, "
            f"b={b['b']:.3f}; Gamma-Gamma p={b['p']:.2f}, q={b['q']:.2f}, v={b['v']:.2f} (its mean spend "
            "includes the first purchase, as the features do).",
            "",
            f"Goal (issue 13): {GOAL}.",
            "",
            "| model | MAE | RMSE | predicted / actual total | top-10% revenue capture | Spearman (buyers) "
            "| validation MAE (61 days) | meets goal | fit s |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *_notes(result),
        ]
    )


def _notes(result: dict) -> list[str]:
    m = result["metrics"]
    shipped = m[result["shipped"]]
    return [
        f"**Verdict.** The shipped model ({result['shipped']}) reaches MAE {shipped['mae']:.2f}, capture "
        f"{shipped['capture_top_decile']:.3f} and total {shipped['total_ratio']:.2f}: the goal is "
        f"{'met' if _meets(shipped) == 'yes' else 'NOT met'}. Why the total is hard here: every model can "
        "only learn the spending level of the calibration months (the whole cohort joined in Q1 1997, so "
        "no December and no second year is ever observed before the holdout). BG/NBD x Gamma-Gamma, "
        f"stationary by design, over-predicts the validation months (total "
        f"{m['BG/NBD x Gamma-Gamma']['valid_total_ratio']:.2f}) and under-predicts the holdout "
        f"({m['BG/NBD x Gamma-Gamma']['total_ratio']:.2f}); the factor fitted on validation (total scale "
        f"{result['total_scale']['on offset']:.2f} for the offset model) carries the summer level forward. "
        "MAE and the total pull apart: with 70% of customers buying nothing, predicting 0 for everyone "
        "already scores near the best MAE, so a model that lowers MAE does so by predicting less. Capture "
        "(ranking) improves over both independent figures but stays under 0.53: purchase histories of "
        "9 months are all any model sees here.",
    ]


def main() -> int:
    from configs.settings import load_settings

    if not CONFIG.is_file():
        print(f"bench_clv: no dataset configuration at {CONFIG}", file=sys.stderr)
        return 2
    seed = load_settings().training.seed
    orders, customers, _ = load_cdnow()
    result = run(orders, customers, seed=seed)
    text = render(result, seed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

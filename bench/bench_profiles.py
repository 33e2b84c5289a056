"""RFM shares and persona names on the demo world and on CDNOW (real orders-only data).

For each world, at its latest snapshot: the RFM cut points fitted as `persona tags fit` does, the share of
every RFM score and of the 11 RFM segments, how many customers never ordered (no RFM); then the
segmentation fitted as `persona train segments` does (customers with an order), each persona with its
segment's median recency, orders, spend and tenure, and whether the most recent and most frequent
segment got a lapsed name (it must not).

    .venv/bin/python -m bench.bench_profiles
    PERSONA_BENCH_CUSTOMERS=20000 (demo size); PERSONA_BENCH_CDNOW_FEATURES=DIR: a folder holding CDNOW's
    customer_transactions.parquet (`persona --config configs/datasets/cdnow.yaml features build`).
Writes bench/results/profiles.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "profiles.md"
# the transactions part of the segmentation_v1 FeatureService (all an orders-only source has)
TRANSACTIONS = [
    "recency_days",
    "frequency_90d",
    "frequency_365d",
    "monetary_90d",
    "monetary_365d",
    "avg_order_value_365d",
    "category_breadth_365d",
    "orders_lifetime",
    "monetary_lifetime",
    "tenure_days",
]


def profile(name: str, frame: pd.DataFrame, features: list[str]) -> list[str]:
    from artifacts.catalog import read_catalog
    from configs.settings import load_settings
    from models.personas import LAPSED
    from models.segmentation import fit_segmentation
    from models.tag_engine import fit_cutpoints

    settings = load_settings()
    catalog = read_catalog(settings.tags.catalog_path())
    latest = frame["event_timestamp"].max()
    snap = frame[frame["event_timestamp"] == latest].reset_index(drop=True)
    inputs = snap.copy()
    for col in catalog.required_inputs:
        if col not in inputs.columns:
            inputs[col] = np.nan if col not in ("persona", "churn_tier", "conversion_tier") else None
    cut = fit_cutpoints(catalog, inputs)
    keys = ["rfm_r", "rfm_f", "rfm_m", "rfm_segment"]
    tags = catalog.evaluate(inputs, cut)[keys]
    n = len(snap)
    prospects = int(tags["rfm_r"].isna().sum())
    lines = [f"### {name}: {n:,} customers at {pd.Timestamp(latest).date()}", ""]
    lines.append(
        f"{prospects:,} never ordered (no RFM); {int((snap['frequency_365d'] > 0).sum()):,} bought in the last "
        "365 days (the population the scores are fitted on). Shares of all customers:"
    )
    lines += ["", "| score | 1 | 2 | 3 | 4 | 5 | unset |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key in ("rfm_r", "rfm_f", "rfm_m"):
        counts = tags[key].value_counts()
        cells = [f"{100 * counts.get(float(s), 0) / n:.1f} %" for s in range(1, 6)]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {100 * prospects / n:.1f} % |")
    seg = tags["rfm_segment"].fillna("(unset: prospect)").value_counts()
    reached = sum(1 for v in catalog.tag("rfm_segment").values if v in seg.index)
    lines += ["", f"RFM segments reached: {reached} of 11.", "", "| rfm_segment | share |", "|---|---:|"]
    lines += [f"| {k} | {100 * v / n:.1f} % |" for k, v in seg.items()]

    cfg = settings.training.segments
    buyers = snap[snap["orders_lifetime"] > 0]
    model = fit_segmentation(X=snap, features=features, k=cfg.k, k_range=tuple(cfg.k_range), seed=7)
    ids = model.predict(buyers)
    per = (
        buyers.assign(segment=ids)
        .groupby("segment")
        .agg(
            customers=("recency_days", "size"),
            recency=("recency_days", "median"),
            orders=("orders_lifetime", "median"),
            spend=("monetary_lifetime", "median"),
            tenure=("tenure_days", "median"),
        )
    )
    per.insert(0, "persona", [model.persona_names[int(i)] for i in per.index])
    most_recent, most_frequent = per["recency"].idxmin(), per["orders"].idxmax()
    both = most_recent == most_frequent
    verdict = (
        f"most recent and most frequent segment: {per.loc[most_recent, 'persona']} "
        f"({'not lapsed' if per.loc[most_recent, 'persona'] not in LAPSED else 'LAPSED: wrong'})"
        if both
        else f"most recent segment: {per.loc[most_recent, 'persona']}; most frequent: "
        f"{per.loc[most_frequent, 'persona']}"
    )
    lines += [
        "",
        f"Personas (k = {model.k}, fitted on the {len(buyers):,} customers with an order; "
        f"{n - len(buyers):,} prospects by rule). {verdict}.",
        "",
        "| id | persona | customers | median recency (days) | median orders | median spend | median tenure (days) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for sid, r in per.iterrows():
        lines.append(
            f"| {sid} | {r['persona']} | {r['customers']:,} | {r['recency']:.0f} | {r['orders']:.0f} | "
            f"{r['spend']:,.0f} | {r['tenure']:.0f} |"
        )
    return lines + [""]


def main() -> None:
    from bench.bench_stability import world

    lines = [
        "## Profiles: RFM shares and persona names (demo and CDNOW)",
        "",
        "`.venv/bin/python -m bench.bench_profiles`",
        "",
    ]
    customers = int(os.environ.get("PERSONA_BENCH_CUSTOMERS", "20000"))
    with tempfile.TemporaryDirectory() as tmp:
        _, features, frame = world(customers, Path(tmp))
    lines += profile(f"Demo world ({customers:,} generated customers)", frame, features)
    cdnow = os.environ.get("PERSONA_BENCH_CDNOW_FEATURES")
    if cdnow:
        tx = pd.read_parquet(Path(cdnow) / "customer_transactions.parquet")
        lines += profile("CDNOW (orders only)", tx, TRANSACTIONS)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

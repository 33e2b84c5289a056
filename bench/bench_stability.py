"""Persona stability across retrains on the demo world: ARI between the champion's and the retrained
challenger's segments on the SAME customers, for a champion trained 1, 3 and 6 months (snapshots of
30 days) before the retrain, and whether any persona was lost.

The retrain is what `persona train segments` does with a champion: k kept, k-means warm-started from the
champion's centroids, clusters matched by Hungarian assignment in the champion's scaled space. A cold
refit (no reference) is shown beside it. Features: the `segmentation_v1` FeatureService (from Feast);
customers: those with an order before the retrain snapshot (prospects are never clustered).

    BENCH=stability make bench        # or: .venv/bin/python -m bench.bench_stability
    PERSONA_BENCH_CUSTOMERS=20000 (default) sets the world's size. Writes bench/results/stability.md.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stability.md"
MONTHS = (1, 3, 6)


def world(customers: int, base: Path):
    """Generate, ingest, build features and apply Feast; returns (settings, features, frame by snapshot)."""
    from configs.settings import load_settings
    from features.build import build_features
    from features.feast_io import apply_repo, get_store, service_features
    from features.ingest import run_ingest
    from features.synthetic.generate import generate

    settings = load_settings(data_dir=str(base), sources={"as_of": "2026-01-01T00:00:00Z"})
    generate(settings.generator.model_copy(update={"customers": customers}), out=base / "raw", force=True)
    run_ingest(settings)
    build_features(settings)
    apply_repo(settings)
    features = service_features(get_store(settings), settings.training.services["segments"])
    folder = settings.path(settings.feast.source_dir)
    tx = pd.read_parquet(folder / "customer_transactions.parquet")
    eng = pd.read_parquet(folder / "customer_engagement.parquet").drop(columns=["created"])
    frame = tx.drop(columns=["created"]).merge(eng, on=["customer_id", "event_timestamp"], how="left")
    return settings, features, frame


def measure(customers: int) -> dict:
    from models.segmentation import adjusted_rand, fit_segmentation

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        settings, features, frame = world(customers, Path(tmp))
        print(f"  world of {customers:,} customers ready in {time.perf_counter() - started:.0f}s")
    cfg, seed = settings.training.segments, settings.training.seed
    snaps = sorted(frame["event_timestamp"].unique())
    latest = snaps[-1]
    buyers = frame[(frame["event_timestamp"] == latest) & (frame["orders_lifetime"] > 0)]
    rows = []
    for months in MONTHS:
        then = snaps[-1 - months]
        past = frame[(frame["event_timestamp"] == then) & (frame["orders_lifetime"] > 0)]
        champion = fit_segmentation(X=past, features=features, k=cfg.k, k_range=tuple(cfg.k_range), seed=seed)
        retrained = fit_segmentation(
            X=buyers, features=features, k=cfg.k, k_range=tuple(cfg.k_range), seed=seed, reference=champion
        )
        cold = fit_segmentation(
            X=buyers, features=features, k=cfg.k, k_range=tuple(cfg.k_range), seed=seed + 1
        )
        before = champion.predict(buyers)
        after = retrained.predict(buyers)
        lost = sorted(set(champion.persona_names.values()) - set(retrained.persona_names.values()))
        rows.append(
            {
                "months": months,
                "champion_snapshot": str(pd.Timestamp(then).date()),
                "retrain_snapshot": str(pd.Timestamp(latest).date()),
                "customers": len(buyers),
                "k": f"{champion.k} -> {retrained.k}",
                "ari": adjusted_rand(before, after),
                "same_id": float((before == after).mean()),
                "ari_cold": adjusted_rand(before, cold.predict(buyers)),
                "lost": ", ".join(lost) or "none",
                "personas": ", ".join(sorted(champion.persona_names.values())),
            }
        )
        print(f"  {months} month(s): ARI {rows[-1]['ari']:.3f} (cold refit {rows[-1]['ari_cold']:.3f})")
    return {"customers": customers, "rows": rows}


def write(result: dict) -> None:
    lines = [
        "## Persona stability across retrains (demo world)",
        "",
        f"`.venv/bin/python -m bench.bench_stability` with {result['customers']:,} generated customers "
        "(`PERSONA_BENCH_CUSTOMERS`). A champion fitted at an earlier snapshot, then retrained at the "
        "latest one as `persona train segments` does (k kept, warm start from the champion's centroids, "
        "Hungarian matching in the champion's scaled space). ARI and the share of customers keeping the "
        "same segment id are on the same customers (buyers at the retrain snapshot); the cold refit is a "
        "fresh k-means with another seed and no reference. Gate floor: `training.gate.ari_floor` 0.8.",
        "",
        "| champion trained | champion snapshot | retrain snapshot | customers | k | ARI | same id | ARI cold refit | personas lost |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['months']} month(s) earlier | {r['champion_snapshot']} | {r['retrain_snapshot']} | "
            f"{r['customers']:,} | {r['k']} | {r['ari']:.3f} | {r['same_id']:.3f} | {r['ari_cold']:.3f} | {r['lost']} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


def main() -> None:
    customers = int(os.environ.get("PERSONA_BENCH_CUSTOMERS", "20000"))
    write(measure(customers))


if __name__ == "__main__":
    main()

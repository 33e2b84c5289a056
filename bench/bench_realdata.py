"""Public datasets through the model code: held-out test metrics of LightGBM and the logistic baseline.

Run: `BENCH=realdata make bench` (or `python -m bench.bench_realdata`). Writes bench/results/realdata.md.
`python -m bench.bench_realdata cdnow` runs only the CDNOW section (the whole pipeline on a real
orders-only file, through `configs/datasets/cdnow.yaml`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from configs.settings import load_settings
from training.datasets import evaluate_dataset, load_mapping, mapping_paths, shared_data_dir

RESULTS = Path(__file__).resolve().parent / "results" / "realdata.md"
# Floors on test ROC-AUC (tests/model/test_realdata.py). Bank Marketing's floor is the logistic baseline
# on validation (the model shipped is never worse); its random split's 0.79 is a labelled reference only.
FLOORS = {"telco_churn": 0.84, "x_education_leads": 0.87, "bank_marketing": "shipped >= LR (valid)"}
CDNOW_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "datasets" / "cdnow.yaml"


def cdnow_churn() -> list[str]:
    """CDNOW through the real pipeline (ingest -> features -> Feast -> churn training set from the
    orders-only FeatureService), then LightGBM and the logistic baseline on the same time split."""
    import os
    import secrets
    import tempfile
    import time

    from configs.settings import load_settings
    from features.build import build_features
    from features.feast_io import apply_repo, get_store
    from features.ingest import run_ingest
    from models.metrics import binary_metrics
    from training.jobs import fit_classifiers, select_candidate
    from training.trainsets import LABEL, classifier_data

    path = shared_data_dir() / "cdnow" / "CDNOW_master.txt"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PERSONA_DATA_DIR"] = tmp
        os.environ["PERSONA_SOURCES__ORDERS__PATH"] = str(path)
        # real data is never hashed with the public demo salt (features.salt_guard): a secret per run
        os.environ.setdefault("PERSONA_IDENTITY__SALT", secrets.token_urlsafe(16))
        settings = load_settings(CDNOW_CONFIG)
        started = time.perf_counter()
        run_ingest(settings)
        build_features(settings)
        apply_repo(settings)
        data = classifier_data(settings, "churn", store=get_store(settings))
        model, baseline = fit_classifiers(data, settings)
        shipped, why = select_candidate(
            model, baseline, valid=data.valid, metric=settings.training.gate.primary_metric
        )
        seconds = time.perf_counter() - started
    y = data.test[LABEL].to_numpy()
    lgb, lr = (
        binary_metrics(y, model.predict_proba(data.test)),
        binary_metrics(y, baseline.predict_proba(data.test)),
    )
    w = data.split.window()
    window = "; ".join(
        f"{n} snapshots {w[f'{n}_first_snapshot'][:10]} .. {w[f'{n}_last_snapshot'][:10]}"
        for n in ("train", "valid", "test")
    )
    sizes = "/".join(str(len(f)) for f in (data.train, data.valid, data.test))
    return [
        "## CDNOW: a real orders-only business, 90-day churn (the whole pipeline)",
        "",
        "Command: `python -m bench.bench_realdata cdnow` (also part of `BENCH=realdata make bench`). The "
        "CDNOW purchase file (23,570 customers, 1997-01 to 1998-06; `../shared/data/cdnow/SOURCE.md`) read "
        "through `configs/datasets/cdnow.yaml` only: ingest, point-in-time features every 30 days, Feast, "
        f"the `{data.service}` FeatureService, churn labels (no completed order in the {data.split.horizon_days} "
        "days after a snapshot, for customers who bought in the 365 days before it; only snapshots whose "
        "horizon ends inside the data), a purged time split "
        f"(train/valid/test rows {sizes}; {window}). Seed {settings.training.seed}; {seconds:.0f} s from raw "
        "file to both fits on a shared 2-core machine.",
        "",
        "| model | test ROC-AUC | test PR-AUC | Brier | top-decile lift |",
        "|---|---|---|---|---|",
        f"| LightGBM | {lgb['roc_auc']:.4f} | {lgb['pr_auc']:.4f} | {lgb['brier']:.4f} | {lgb['lift_top_decile']:.2f} |",
        f"| logistic baseline | {lr['roc_auc']:.4f} | {lr['pr_auc']:.4f} | {lr['brier']:.4f} | {lr['lift_top_decile']:.2f} |",
        "",
        f"Test positive rate {y.mean():.3f} (train {data.train[LABEL].mean():.3f}). Shipped by training: "
        f"{why} (chosen on validation, never on test).",
    ]


def main() -> int:
    if sys.argv[1:] == ["cdnow"]:
        text = "\n".join(cdnow_churn())
        (RESULTS.parent / "realdata_cdnow.md").write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0
    if not shared_data_dir().is_dir():
        print(
            f"bench_realdata: no public datasets at {shared_data_dir()} (set PERSONA_SHARED_DATA)",
            file=sys.stderr,
        )
        return 2
    seed = load_settings().training.seed
    rows = []
    results: dict[str, dict] = {}
    for path in mapping_paths():
        mapping = load_mapping(path)
        print(f"  {mapping.name} ...", flush=True)
        r = evaluate_dataset(mapping, seed=seed)
        results[mapping.name] = r
        lgb, base = r["lightgbm"], r["baseline"]
        floor = FLOORS.get(mapping.name)
        rows.append(
            f"| {mapping.name} | {mapping.kind} | {r['split']} | {r['n_train']}/{r['n_valid']}/{r['n_test']} "
            f"| {r['test_positive_rate']:.3f} | **{lgb['roc_auc']:.4f}** | {base['roc_auc']:.4f} "
            f"| {lgb['pr_auc']:.4f} | {base['pr_auc']:.4f} | {lgb['brier']:.4f} | {base['brier']:.4f} "
            f"| {lgb['lift_top_decile']:.2f} | {base['lift_top_decile']:.2f} "
            f"| {floor if floor is not None else '-'} | {r['shipped']} "
            f"| {r['lightgbm_fit_seconds']:.1f} / {r['baseline_fit_seconds']:.1f} |"
        )
    text = "\n".join(
        [
            "## Real data: LightGBM vs logistic baseline (held-out test split)",
            "",
            f"Command: `BENCH=realdata make bench` (`python -m bench.bench_realdata`); seed {seed} "
            "(`training.seed`); data read in place from the shared data folder through `configs/datasets/*.yaml`. "
            "Both models are calibrated (Platt) and tiered on the validation split; the test split is untouched "
            "until these figures. Fit seconds were measured on a 2-core machine shared with other jobs.",
            "",
            "| dataset | kind | split | train/valid/test | test positive rate | ROC-AUC LGBM | ROC-AUC LR | "
            "PR-AUC LGBM | PR-AUC LR | Brier LGBM | Brier LR | top-decile lift LGBM | lift LR | floor (ROC-AUC) "
            "| shipped (better on validation PR-AUC) | fit s LGBM / LR |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *_bank_notes(results),
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    print(text)
    cdnow = "\n".join(cdnow_churn())
    (RESULTS.parent / "realdata_cdnow.md").write_text(cdnow + "\n", encoding="utf-8")
    print(cdnow)
    return 0


def _bank_notes(results: dict[str, dict]) -> list[str]:
    """Why the time-ordered Bank figure stays below the 0.79 random-split reference, with this run's numbers
    (and, marked as such, the numbers of the investigation that chose the ordered configuration)."""
    names = ("bank_marketing", "bank_marketing_random", "bank_marketing_random_macro_only")
    if not all(n in results for n in names):
        return []
    ordered, rnd, macro = (results[n] for n in names)
    return [
        "**Bank Marketing: time order vs random split.** `bank_marketing` is the honest figure: calls in file "
        f"(time) order, first {ordered['n_train']} train, next {ordered['n_valid']} valid (early stopping, "
        f"calibration), last {ordered['n_test']} test; `duration` (known only after the call), the five monthly "
        f"macro indicators and `month` dropped. It reaches ROC-AUC {ordered['lightgbm']['roc_auc']:.3f} "
        f"(LightGBM) / {ordered['baseline']['roc_auc']:.3f} (logistic), below the random split's 0.79; its "
        "floor is the logistic baseline (the model training ships is the better of the two on validation: "
        f"here {ordered['shipped']}). `bank_marketing_random` is a labelled comparison only, no floor: a random split mixes every month into train and test, "
        "and the model then recognises the month and interpolates its success rate. "
        "`bank_marketing_random_macro_only` measures that: with the five macro indicators alone (one value "
        f"per month, nothing about the client) the random split gives {macro['lightgbm']['roc_auc']:.3f}, "
        f"against {rnd['lightgbm']['roc_auc']:.3f} with every column. Under time order the period cannot be "
        "learned: the success rate rises from "
        f"{ordered['train_positive_rate']:.3f} in the training calls to {ordered['test_positive_rate']:.3f} in "
        "the test window, the test months' macro values lie outside the training range (euribor3m 0.63-1.30 in "
        "the test window, 1.34-5.05 in training), and their relation to sales reverses (higher euribor3m goes with more sales in the first 60% of calls, fewer in the last 20%); "
        "the previous-campaign fields (pdays, previous, poutcome) are constant over the first ~55% of calls.",
        "",
        "Investigation (same seed; settings chosen on validation ROC-AUC or by reasoning, never on test): "
        "with the 75/5/20 split, keeping the macro indicators gives 0.620 / 0.643 (LightGBM / logistic) and "
        "keeping `month` 0.625 / 0.701; the former 60/20/20 split without macro gave 0.656 / 0.691; a "
        "walk-forward over the last 20% in five expanding-window folds (5% validation before each) gives "
        "0.61 / 0.61 averaged within folds (0.76 / 0.75 with the folds' predictions pooled, which credits the "
        "per-fold recalibration to the rising success rate rather than the ranking of clients). "
        "Ceiling: even trained on the test period itself (5-fold CV inside the last 20%, leaky by design), "
        "client features reach only 0.72 (0.77 with `month`). 0.79 is not reachable by an order-respecting "
        "evaluation of this file.",
    ]


if __name__ == "__main__":
    sys.exit(main())

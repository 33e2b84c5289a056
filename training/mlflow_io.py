"""MLflow at the edge: tracking set-up, what each run logs (config, commit, window, plots, report) and the
pyfunc wrapper that carries a `models` bundle to serving.

Nothing here runs at import time; matplotlib is imported when a plot is drawn (its Agg backend first).
"""

from __future__ import annotations

import base64
import html
import json
import pickle
import re
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from artifacts.registry import BUNDLE_ARTIFACT, PYFUNC_MODEL_CODE, model_name
from core.logs import stderr_to_log
from core.redact import mask_urls

if TYPE_CHECKING:
    from configs.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key|apikey|private_key|credential)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


# ------------------------------------------------------------------------------------------ naming
def ensure_experiment(settings: Settings, kind: str) -> str:
    """The experiment id of `kind`, created with an explicit artifact location under `artifact_root`."""

    name = model_name(settings, kind)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = settings.path(settings.mlflow.artifact_root)
    location = str(root) if "://" in str(root) else (root.resolve() / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


# ------------------------------------------------------------------------------- run metadata
def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of a config tree with secrets masked: keys that name a secret, and credentials in URLs."""
    if isinstance(value, Mapping):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, key) for v in value]
    if _SECRET_KEY.search(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return mask_urls(_URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", value))
    return value


def hyperparameters(model: Any) -> dict[str, Any]:
    """The fitted model's hyperparameters as MLflow params: the estimator's parameters (`model.*`), and
    the choices around it (calibration, best iteration, k and its search range, seed)."""
    meta = getattr(model, "metadata", None) or {}
    out: dict[str, Any] = {f"model.{k}": v for k, v in sorted((meta.get("params") or {}).items())}
    for key in ("model", "calibration", "best_iteration", "k", "k_range", "seed"):
        if key in meta:
            out[key if key != "seed" else "model_seed"] = meta[key]
    if hasattr(model, "tier_cuts"):
        out["tier_cuts"] = ",".join(f"{c:.6g}" for c in model.tier_cuts)
    return out


def describe_run(*, kind: str, model: Any, service: str, window: Mapping[str, Any], commit: str) -> str:
    """The run's description (MLflow's note): what was trained, on which features and which window."""
    features = list(getattr(model, "features", []))
    meta = getattr(model, "metadata", None) or {}
    if kind == "segments":
        what = f"Segmentation (k-means, k={meta.get('k', '?')}) of {window.get('rows', '?'):,} customers"
        when = f"at the feature snapshot {window.get('snapshot', '?')}"
        if "sampling" in window:
            when += f"; k-means fitted on the {window['sampling']}"
    else:
        what = f"{kind.capitalize()} classifier ({meta.get('model', 'lightgbm')}, beside a logistic baseline)"
        when = "; ".join(
            f"{part} {window.get(f'{part}_first_snapshot', '?')[:10]}..{window.get(f'{part}_last_snapshot', '?')[:10]}"
            f" ({window.get(f'{part}_rows', 0):,} rows)"
            for part in ("train", "valid", "test")
        )
        if "label_horizon_days" in window:
            when += f"; labels over the {window['label_horizon_days']} days after each snapshot"
        if "sampling" in window:
            when += f"; rows: {window['sampling']}"
    return (
        f"{what}, trained on the Feast FeatureService `{service}` ({len(features)} features: "
        f"{', '.join(features)}); {when}. Code at commit {commit[:12]}; configuration in config.json."
    )


def log_datasets(
    frames: Mapping[str, pd.DataFrame],
    *,
    features: list[str],
    service: str,
    source: str,
    target: str | None,
) -> None:
    """Record each split (context -> frame) as an MLflow dataset input named after the FeatureService
    and its snapshot window: schema, row count and digest of the features (and label), not the rows."""

    for context, frame in frames.items():
        columns = [*features, *([target] if target and target in frame else [])]
        stamps = frame.get("event_timestamp")
        if stamps is not None and len(stamps):
            window = f"{stamps.min():%Y-%m-%d}..{stamps.max():%Y-%m-%d}"
        else:
            window = "none"
        data = frame[columns].reset_index(drop=True)
        # counts as floats, as in the model's signature: a missing snapshot gives NaN (see jobs._example)
        data = data.astype({c: "float64" for c in columns if pd.api.types.is_integer_dtype(data[c])})
        dataset = pandas_dataset(
            data, source=source, targets=target if target in columns else None, name=f"{service}@{window}"
        )
        mlflow.log_input(
            dataset,
            context=context,
            tags={"feast.feature_service": service, "window": window, "rows": str(len(frame))},
        )


def pandas_dataset(data: pd.DataFrame, *, source: str, targets: str | None, name: str) -> Any:
    """`mlflow.data.from_pandas(data, ...)` with the same digest and schema, computed a column at a time.

    MLflow computes both with a Python call per cell (`type()` of every value for the digest, a missing
    check of every value for each column's `required`): over a million training rows of 50 features
    that was most of a classifier's logging time. Here only text columns are looked at value by value."""
    with warnings.catch_warnings():
        # MLflow 3.17 registers its local-file source class twice and warns that a path is ambiguous
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(
            data, source=source, targets=targets, name=name, digest=_pandas_digest(data)
        )
    dataset.__dict__["schema"] = _pandas_schema(data)  # the value of its cached `schema` property
    return dataset


def _all_str(col: pd.Series) -> bool:
    """Every value is exactly a `str` (what MLflow's digest keeps as a text column)."""
    if len(col) == 0:
        return True
    if col.dtype != object and not isinstance(col.dtype, pd.StringDtype):
        return False  # numbers, booleans, timestamps: never `str` values
    return all(type(v) is str for v in col.to_numpy(dtype=object))


def _pandas_digest(df: pd.DataFrame) -> str:
    """`mlflow.data.digest_utils.compute_pandas_digest`: the first rows' hash of the text and number
    columns (text: every value of the whole column is a `str`), the row count and the column names."""
    from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest

    trimmed = df.head(MAX_ROWS)
    strings = trimmed.columns[[_all_str(df[c]) for c in df.columns]]
    numbers = trimmed.select_dtypes(include=[np.number]).columns
    trimmed = trimmed[strings.union(numbers)]
    return get_normalized_md5_digest(
        [pd.util.hash_pandas_object(trimmed).values, np.int64(len(df))]
        + [str(x).encode() for x in df.columns]
    )


def _pandas_schema(df: pd.DataFrame) -> Any:
    """The schema MLflow infers for `df` (None when it cannot: one column it cannot type), inferred on a
    few rows: for a typed (non-object) column the type follows from its dtype and `required` from
    whether any value is missing, so the first row and the first missing row of each column give the
    same answer; object columns are inferred whole. MLflow's own inference, so the record is its own
    (`tests/model/test_dataset_logging.py` holds the two side by side)."""
    from mlflow.types import Schema

    try:
        return Schema(_colspecs(df))
    except Exception:  # what PandasDataset.schema does when inference fails
        return None


def _colspecs(df: pd.DataFrame) -> list[Any]:
    typed = [c for c in df.columns if df[c].dtype != object]
    rows = {0}
    for c in typed:
        missing = df[c].isna().to_numpy()
        if missing.any():
            rows.add(int(missing.argmax()))
    specs = {}
    if typed and len(df):
        for spec in _infer_inputs(df[typed].iloc[sorted(rows)]):
            specs[spec.name] = spec
    for c in df.columns:
        if c not in specs:
            for spec in _infer_inputs(df[[c]]):
                specs[spec.name] = spec
    return [specs[c] for c in df.columns]


def _infer_inputs(frame: pd.DataFrame) -> list[Any]:
    from mlflow.types.utils import _infer_schema  # what PandasDataset.schema calls

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint about integer columns, said once per column
        return list(_infer_schema(frame).inputs)


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The checked-out commit (with `-dirty` if the tree has changes), or "unknown" outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else (sha or "unknown")


def service_version(service: str) -> tuple[str, int | None]:
    """`churn_v2` -> ("churn", 2); a name without `_vN` -> (name, None)."""
    match = re.fullmatch(r"(.+)_v(\d+)", service)
    return (match.group(1), int(match.group(2))) if match else (service, None)


# ------------------------------------------------------------------------------------------- plots
def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in cron
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=100)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def classifier_plots(
    *, y_true: np.ndarray, curves: Mapping[str, np.ndarray], importance: Mapping[str, float], out_dir: Path
) -> dict[str, Path]:
    """ROC, precision-recall, calibration and feature-importance PNGs for held-out predictions.
    `curves` maps a model name (e.g. "lightgbm", "baseline") to its probabilities on the same rows."""

    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true, dtype=int)
    paths: dict[str, Path] = {}

    plt, fig, ax = _figure()
    for name, proba in curves.items():
        fpr, tpr, _ = roc_curve(y, proba)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test window)")
    ax.legend(loc="lower right")
    paths["roc"] = _save(plt, fig, out_dir / "roc.png")

    plt, fig, ax = _figure()
    for name, proba in curves.items():
        precision, recall, _ = precision_recall_curve(y, proba)
        ax.plot(recall, precision, label=name)
    ax.axhline(y.mean(), ls="--", c="grey", lw=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test window)")
    ax.legend(loc="upper right")
    paths["pr"] = _save(plt, fig, out_dir / "pr.png")

    plt, fig, ax = _figure()
    for name, proba in curves.items():
        frac_pos, mean_pred = calibration_curve(y, proba, n_bins=10, strategy="quantile")
        ax.plot(mean_pred, frac_pos, marker="o", ms=3, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration (test window)")
    ax.legend(loc="upper left")
    paths["calibration"] = _save(plt, fig, out_dir / "calibration.png")

    top = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:20]
    plt, fig, ax = _figure()
    ax.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)])
    ax.set(xlabel="importance", title="Feature importance")
    paths["importance"] = _save(plt, fig, out_dir / "feature_importance.png")
    return paths


def value_plots(
    *,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    importance: Mapping[str, float],
    out_dir: Path,
) -> dict[str, Path]:
    """Value calibration (mean predicted vs mean actual spend per predicted decile), revenue capture (share
    of actual revenue in the top x% predicted) and feature importance PNGs, on held-out rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(actual, dtype=np.float64)
    paths: dict[str, Path] = {}

    plt, fig, ax = _figure()
    for name, pred in predictions.items():
        p = np.asarray(pred, dtype=np.float64)
        decile = np.minimum((np.argsort(np.argsort(p, kind="stable"), kind="stable") * 10) // len(p), 9)
        means = pd.DataFrame({"d": decile, "p": p, "y": y}).groupby("d").mean()
        ax.plot(means["p"], means["y"], marker="o", ms=3, label=name)
    top = max(float(y.max()), 1.0)
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1)
    ax.set(
        xscale="symlog",
        yscale="symlog",
        xlabel="mean predicted spend (decile)",
        ylabel="mean actual spend",
        title="Value calibration (test window)",
    )
    ax.legend(loc="upper left")
    paths["value_calibration"] = _save(plt, fig, out_dir / "value_calibration.png")

    plt, fig, ax = _figure()
    share = np.arange(1, len(y) + 1) / len(y)
    for name, pred in predictions.items():
        order = np.argsort(-np.asarray(pred, dtype=np.float64), kind="stable")
        ax.plot(share, np.cumsum(y[order]) / max(y.sum(), 1e-12), label=name)
    ax.plot(
        share, np.cumsum(np.sort(y)[::-1]) / max(y.sum(), 1e-12), ls=":", c="black", lw=1, label="perfect"
    )
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="random")
    ax.axvline(0.1, c="grey", lw=0.5)
    ax.set(
        xlabel="share of customers (highest predicted first)",
        ylabel="share of actual revenue",
        title="Revenue capture (test window)",
    )
    ax.legend(loc="lower right")
    paths["capture"] = _save(plt, fig, out_dir / "capture.png")

    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:20]
    plt, fig, ax = _figure()
    ax.barh([k for k, _ in reversed(ranked)], [v for _, v in reversed(ranked)])
    ax.set(xlabel="importance (gain)", title="Feature importance")
    paths["importance"] = _save(plt, fig, out_dir / "feature_importance.png")
    return paths


def recall_at_k_plot(
    *, curves: Mapping[str, Mapping[str, float]], ks: tuple[int, ...], out_dir: Path
) -> dict[str, Path]:
    """Recall@k and NDCG@k against k for each recommender (the metrics dicts of `models.recommend`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for metric, title in (("recall", "Recall@k"), ("ndcg", "NDCG@k")):
        plt, fig, ax = _figure()
        for name, metrics in curves.items():
            ax.plot(ks, [metrics.get(f"{metric}_at_{k}", np.nan) for k in ks], marker="o", ms=3, label=name)
        ax.set(xlabel="k", ylabel=metric, title=f"{title} (test window)", xticks=list(ks))
        ax.legend(loc="lower right")
        paths[f"{metric}_at_k"] = _save(plt, fig, out_dir / f"{metric}_at_k.png")
    return paths


# Columns of a profile table that describe the segment, not its centre: never plotted as features.
PROFILE_META = ("persona", "n", "share")


def segment_label(segment_id: Any, persona: Any) -> str:
    """`3 high_value_loyal`: what a segment is called on a plot (the id alone says nothing)."""
    return f"{segment_id} {persona}" if persona is not None and str(persona) else str(segment_id)


def segment_plots(*, profiles: pd.DataFrame, sizes: Mapping[str, int], out_dir: Path) -> dict[str, Path]:
    """Segment sizes labelled by persona, and a heat map of each feature's segment means standardised
    across segments (rows named by segment and persona; size and share are not features)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    personas = profiles["persona"].to_dict() if "persona" in profiles.columns else {}
    by_text = {str(k): v for k, v in personas.items()}
    plt, fig, ax = _figure()
    names = [segment_label(k, by_text.get(str(k))) for k in sizes]
    ax.barh(names[::-1], list(sizes.values())[::-1])
    ax.set(xlabel="customers", title="Segment sizes (segment, persona)")
    paths["sizes"] = _save(plt, fig, out_dir / "segment_sizes.png")

    numeric = profiles.drop(columns=[c for c in PROFILE_META if c in profiles.columns]).select_dtypes(
        "number"
    )
    if not numeric.empty:
        std = numeric.std(ddof=0).replace(0, 1.0)
        z = (numeric - numeric.mean()) / std
        rows = [segment_label(i, by_text.get(str(i))) for i in z.index]
        plt, fig, ax = _figure()
        fig.set_size_inches(max(5.5, 0.35 * z.shape[1] + 3), 0.45 * z.shape[0] + 2.5)
        image = ax.imshow(z.to_numpy(dtype=float), aspect="auto", cmap="coolwarm", vmin=-2, vmax=2)
        ax.set_xticks(range(z.shape[1]), list(z.columns), rotation=90, fontsize=7)
        ax.set_yticks(range(z.shape[0]), rows, fontsize=8)
        ax.set_ylabel("segment, persona")
        ax.set_title("Segment profiles (z-score of segment means across segments)")
        fig.colorbar(image, ax=ax)
        paths["profiles"] = _save(plt, fig, out_dir / "segment_profiles.png")
    return paths


def uplift_plots(
    *, outcome: np.ndarray, treatment: np.ndarray, scores: Mapping[str, np.ndarray], out_dir: Path
) -> dict[str, Path]:
    """Qini curves (incremental responders among the top-scored held-out customers) of each ranking."""
    from models.uplift import qini_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    plt, fig, ax = _figure()
    for name, score in scores.items():
        x, v = qini_curve(outcome, score, treatment)
        ax.plot(x / max(x[-1], 1), v, label=name)
    ax.axhline(0, c="grey", lw=0.5)
    ax.set(
        xlabel="share of customers targeted", ylabel="incremental responders", title="Qini (test customers)"
    )
    ax.legend(loc="upper left")
    return {"qini": _save(plt, fig, out_dir / "qini.png")}


# ------------------------------------------------------------------------------------------- report
def _table(rows: Mapping[str, Any] | pd.DataFrame) -> str:
    if isinstance(rows, pd.DataFrame):
        return rows.to_html(border=0, float_format=lambda v: f"{v:.4f}", escape=True)
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items()
    )
    return f"<table>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def html_report(*, title: str, sections: list[tuple[str, Any]], images: Mapping[str, Path]) -> str:
    """A self-contained HTML page: each section is (heading, mapping | DataFrame | text), then the plots
    embedded as base64 PNGs, so the file reads the same wherever it is opened."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{padding:.2em .8em;border-bottom:1px solid #ddd;"
        "text-align:left}img{max-width:48%;margin:.5em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, Mapping | pd.DataFrame):
            parts.append(_table(content))
        else:
            parts.append(f"<p>{html.escape(str(content))}</p>")
    if images:
        parts.append("<h2>Plots</h2>")
        for name, path in images.items():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ the model
def log_bundle(*, bundle: Any, kind: str, input_example: pd.DataFrame, registered_model_name: str) -> Any:
    """Log `bundle` as the run's pyfunc model `model` (models-from-code: artifacts/pyfunc_model.py, the
    bundle as a pickle artifact, `models/` as code) and register it; returns mlflow's ModelInfo."""

    if kind == "segments":
        output = pd.DataFrame({"segment": bundle.predict(input_example)})
    elif kind == "recommend":
        output = bundle.predict(input_example)
    elif kind == "clv":
        value = bundle.predict(input_example)
        output = pd.DataFrame({"value": value, "tier": bundle.tiers(value)})
    elif kind == "uplift":
        uplift, tier = bundle.score(input_example)
        output = pd.DataFrame({"uplift": uplift, "tier": tier})
    else:
        proba = bundle.predict_proba(input_example)
        output = pd.DataFrame({"probability": proba, "tier": bundle.tiers(proba)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.pkl"
        path.write_bytes(pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL))
        with stderr_to_log("mlflow_registry"):  # "Successfully registered model ..." is a print
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_MODEL_CODE),
                artifacts={BUNDLE_ARTIFACT: str(path)},
                model_config={"kind": kind},
                signature=infer_signature(input_example, output),
                input_example=input_example,
                pip_requirements=_requirements(),
                code_paths=[str(PROJECT_ROOT / "models")],
                registered_model_name=registered_model_name,
            )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("mlflow", "lightgbm", "scikit-learn", "scipy", "pandas", "numpy"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def log_json(data: Any, artifact_file: str) -> None:
    """Log a JSON artifact (numbers made plain)."""

    mlflow.log_dict(json.loads(json.dumps(data, default=_plain)), artifact_file)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)

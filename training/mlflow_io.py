"""MLflow at the edge: tracking set-up, what each run logs (config, commit, window, plots, report) and the
pyfunc wrapper that carries a `models` bundle to serving.

Nothing here runs at import time; mlflow and matplotlib are imported inside functions.
"""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from artifacts.registry import model_name
from core.redact import mask_urls

if TYPE_CHECKING:
    from configs.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key|apikey|private_key|credential)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


# ------------------------------------------------------------------------------------------ naming
def ensure_experiment(settings: Settings, kind: str) -> str:
    """The experiment id of `kind`, created with an explicit artifact location under `artifact_root`."""
    import mlflow

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


def flat_config(settings: Settings) -> dict[str, str]:
    """The full configuration as `section.key -> text`, secrets masked (MLflow params are flat)."""
    tree = mask_secrets(settings.model_dump(mode="json"))
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = json.dumps(node) if isinstance(node, list) else str(node)

    walk(tree, "")
    return out


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
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

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


def segment_plots(*, profiles: pd.DataFrame, sizes: Mapping[str, int], out_dir: Path) -> dict[str, Path]:
    """Segment sizes and a heat map of standardized feature means per segment (segment profiles)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    plt, fig, ax = _figure()
    names = [str(k) for k in sizes]
    ax.bar(names, list(sizes.values()))
    ax.set(ylabel="customers", title="Segment sizes")
    ax.tick_params(axis="x", rotation=30)
    paths["sizes"] = _save(plt, fig, out_dir / "segment_sizes.png")

    numeric = profiles.select_dtypes("number")
    if not numeric.empty:
        std = numeric.std(ddof=0).replace(0, 1.0)
        z = (numeric - numeric.mean()) / std
        plt, fig, ax = _figure()
        fig.set_size_inches(max(5.5, 0.35 * z.shape[1] + 2), 0.45 * z.shape[0] + 2)
        image = ax.imshow(z.to_numpy(dtype=float), aspect="auto", cmap="coolwarm", vmin=-2, vmax=2)
        ax.set_xticks(range(z.shape[1]), list(z.columns), rotation=90, fontsize=7)
        ax.set_yticks(range(z.shape[0]), [str(i) for i in z.index], fontsize=8)
        ax.set_title("Segment profiles (z-score of segment means)")
        fig.colorbar(image, ax=ax)
        paths["profiles"] = _save(plt, fig, out_dir / "segment_profiles.png")
    return paths


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
def _pyfunc_base():
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


def bundle_model_class():
    """The pyfunc wrapper class (built lazily so importing this module does not import mlflow)."""
    global _BUNDLE_MODEL
    if _BUNDLE_MODEL is not None:
        return _BUNDLE_MODEL

    class PersonaBundleModel(_pyfunc_base()):
        """Holds a `models` bundle: a ClassifierBundle (returns calibrated probabilities and tiers) or a
        SegmentationModel (returns the segment and persona). `.bundle` is the object serving uses."""

        def __init__(self, bundle: Any, kind: str) -> None:
            self.bundle = bundle
            self.kind = kind

        def predict(self, context, model_input, params=None):  # noqa: ARG002 - the pyfunc signature
            import pandas as pd

            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            if self.kind == "segments":
                segment = self.bundle.predict(frame)
                return pd.DataFrame({"segment": segment})
            if self.kind == "recommend":
                return self.bundle.predict(frame)
            if self.kind == "clv":
                value = self.bundle.predict(frame)
                return pd.DataFrame({"value": value, "tier": self.bundle.tiers(value)})
            proba = self.bundle.predict_proba(frame)
            return pd.DataFrame({"probability": proba, "tier": self.bundle.tiers(proba)})

    _BUNDLE_MODEL = PersonaBundleModel
    return PersonaBundleModel


_BUNDLE_MODEL = None


def log_bundle(*, bundle: Any, kind: str, input_example: pd.DataFrame, registered_model_name: str) -> Any:
    """Log `bundle` as the run's pyfunc model `model` and register it; returns mlflow's ModelInfo.

    The wrapper class is pickled by value and `models/` ships as code, so loading needs only `models`
    and the libraries, not this training package."""
    import cloudpickle
    import mlflow
    from mlflow.models import infer_signature

    wrapper = bundle_model_class()(bundle, kind)
    output = wrapper.predict(None, input_example)
    signature = infer_signature(input_example, output)
    this_module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this_module)
    try:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapper,
            signature=signature,
            input_example=input_example,
            pip_requirements=_requirements(),
            code_paths=[str(PROJECT_ROOT / "models")],
            registered_model_name=registered_model_name,
        )
    finally:
        cloudpickle.unregister_pickle_by_value(this_module)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("mlflow", "lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "cloudpickle"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def log_json(data: Any, artifact_file: str) -> None:
    """Log a JSON artifact (numbers made plain)."""
    import mlflow

    mlflow.log_dict(json.loads(json.dumps(data, default=_plain)), artifact_file)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)

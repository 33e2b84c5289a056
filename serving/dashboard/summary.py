"""The dashboard's numbers saved beside the data, so a page never counts 100,000 customers while someone
waits: `{data_dir}/dashboard/overview.json` (the overview and the campaign results) and `models.json`
(champions, drift, freshness), each with the key of the data state it was computed from (files'
modification times, the state database's, the registry's).

`write_summaries(settings)` runs at the end of a batch scoring (`persona score --all`, `persona refresh`),
so the summaries a page reads are those of the latest scores. A dashboard that starts reads the file;
when the data has moved since (a CRM sync, a campaign assignment) it shows the file's numbers at once and
recomputes in the background (`app._Cache`), rewriting the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from configs.settings import Settings
from serving.dashboard.campaigns import CampaignResult
from serving.dashboard.model_health import ModelHealth, ModelVersion, ViewFreshness
from serving.dashboard.overview import Overview, TagInfo

log = logging.getLogger("persona.dashboard")
VERSION = 3  # bump when a file's shape changes: an older file is then ignored, not misread


def folder(settings: Settings) -> Path:
    return settings.path("{data_dir}/dashboard")


def normal_key(key: Any) -> Any:
    """A key as it reads back from JSON (tuples become lists), so a key in memory compares to a saved one."""
    return json.loads(json.dumps(key, default=str))


def read(path: Path) -> tuple[Any, dict[str, Any]] | None:
    """(key, payload) of a summary file, or None if it is missing, unreadable or of another version."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("version") != VERSION:
        return None
    return saved.get("key"), saved.get("payload") or {}


def write(path: Path, key: Any, payload: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file; two writers leave one whole file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # per writer, threads too
    tmp.write_text(
        json.dumps({"version": VERSION, "key": normal_key(key), "payload": payload}, default=str),
        encoding="utf-8",
    )
    tmp.replace(path)


# ------------------------------------------------------------------------------------------ helpers
def _stamp(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()


def _unstamp(value: str | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def _records(frame: pd.DataFrame) -> dict[str, Any]:
    # pandas' own JSON keeps NaN as null and numbers as numbers; columns kept so an empty frame keeps them
    return {"columns": list(frame.columns), "rows": json.loads(frame.to_json(orient="values"))}


def _frame(saved: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(saved.get("rows") or [], columns=saved.get("columns") or [])


# ----------------------------------------------------------------------------------------- overview
def overview_payload(data: Overview) -> dict[str, Any]:
    return {
        "known": data.known,
        "withdrawn": data.withdrawn,
        "profiled": data.profiled,
        "scored": data.scored,
        "as_of": _stamp(data.as_of),
        "snapshot": _stamp(data.snapshot),
        "personas": _records(data.personas),
        "tags": [asdict(t) for t in data.tags],
        "tag_counts": _records(data.tag_counts),
        "churn_tag": data.churn_tag,
        "churn_history": _records(data.churn_history),
        "outbox": data.outbox,
        "campaigns": [asdict(c) for c in data.campaigns],
    }


def overview_from(payload: dict[str, Any]) -> Overview:
    tags = [TagInfo(**{**t, "values": tuple(t["values"]) if t["values"] else None}) for t in payload["tags"]]
    counts = _frame(payload["tag_counts"])
    if len(counts):  # values are stored strings (None = unset), never numbers
        counts["value"] = counts["value"].astype(object).where(counts["value"].notna(), None)
    return Overview(
        known=payload["known"],
        withdrawn=payload["withdrawn"],
        profiled=payload["profiled"],
        scored=payload["scored"],
        as_of=_unstamp(payload["as_of"]),
        snapshot=_unstamp(payload["snapshot"]),
        personas=_frame(payload["personas"]),
        tags=tags,
        tag_counts=counts,
        churn_tag=payload["churn_tag"],
        churn_history=_frame(payload["churn_history"]),
        outbox=payload["outbox"],
        campaigns=[CampaignResult(**c) for c in payload.get("campaigns") or []],
    )


# ------------------------------------------------------------------------------------- model health
def models_payload(models: list[ModelHealth], drift: pd.DataFrame, freshness: list[ViewFreshness]) -> dict:
    return {
        "models": [
            {
                "kind": m.kind,
                "name": m.name,
                "error": m.error,
                "versions": [{**asdict(v), "created": _stamp(v.created)} for v in m.versions],
            }
            for m in models
        ],
        "drift": {
            "index": [str(i) for i in drift.index],
            "columns": [str(c) for c in drift.columns],
            "rows": json.loads(drift.to_json(orient="values")) if len(drift) else [],
        },
        "freshness": [{**asdict(f), "snapshot": _stamp(f.snapshot)} for f in freshness],
    }


def models_from(payload: dict[str, Any]) -> tuple[list[ModelHealth], pd.DataFrame, list[ViewFreshness]]:
    models = [
        ModelHealth(
            kind=m["kind"],
            name=m["name"],
            error=m["error"],
            versions=[ModelVersion(**{**v, "created": _unstamp(v["created"])}) for v in m["versions"]],
        )
        for m in payload["models"]
    ]
    saved = payload["drift"]
    drift = (
        pd.DataFrame(saved["rows"], index=saved["index"], columns=saved["columns"], dtype=float)
        if saved["columns"]
        else pd.DataFrame()
    )
    freshness = [ViewFreshness(**{**f, "snapshot": _unstamp(f["snapshot"])}) for f in payload["freshness"]]
    return models, drift, freshness


# ------------------------------------------------------------------------------------------ writing
def write_summaries(settings: Settings) -> None:
    """Compute and save both summaries (called after a batch scoring). A failure is logged, never
    raised: the scores are written already, and a dashboard computes what it lacks itself."""
    from serving.dashboard.app import Dashboard

    try:
        dashboard = Dashboard(settings, digests=[])
        dashboard.save_summaries()
    except Exception as exc:
        log.warning("dashboard summaries not written: %s", exc)

"""Numbers that cannot break a response: inf and NaN fed through every stage (ingest, feature files,
the scoring core as the service runs it) end as quarantine entries or missing values, never as inf in a
feature and never as a response that cannot be encoded (what the service would answer 500 for)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.settings import load_settings
from features.build import write_parquet_atomic
from features.ingest import run_ingest

HEADER = "order_id,customer_ref,order_ts,amount,discount,quantity,category,status"


def test_ingest_quarantines_non_finite_and_absurd_amounts_naming_the_rule(data_dir: Path) -> None:
    raw = data_dir / "raw"
    raw.mkdir()
    rows = [
        "O1,a@x.cn,2024-02-01,100,0,1,books,completed",
        "O2,b@x.cn,2024-02-01,1e308,0,1,books,completed",
        "O3,c@x.cn,2024-02-01,inf,0,1,books,completed",
        "O4,d@x.cn,2024-02-01,1e400,0,1,books,completed",
        "O5,e@x.cn,2024-02-01,50,0,1e12,books,completed",
        "O6,f@x.cn,2024-02-01,500,0,1,books,completed",
    ]
    with gzip.open(raw / "orders.csv.gz", "wt") as f:
        f.write("\n".join([HEADER, *rows]) + "\n")
    sources = {"contacts": None, "events": None, "leads": None, "as_of": "2025-01-01"}
    result = run_ingest(load_settings(data_dir=str(data_dir), sources={"orders": {}, **sources}))
    quarantine = pd.read_parquet(data_dir / "clean" / "quarantine.parquet")
    rules = quarantine.groupby("row")["rule"].apply(set).to_dict()
    assert "amount_too_large" in rules[2] and "number_not_finite" in rules[3]
    assert rules[4] & {"number_not_finite", "number_unparseable"}  # 1e400 overflows the parser
    assert "quantity_too_large" in rules[5]
    orders = result.frame("orders")
    assert sorted(orders["order_id"]) == ["O1", "O6"] and np.isfinite(orders["amount"]).all()
    # the bound is configuration: a business whose orders are that large raises it
    strict = load_settings(data_dir=str(data_dir), sources={"orders": {"max_amount": 200}, **sources})
    assert sorted(run_ingest(strict).frame("orders")["order_id"]) == ["O1"]


def test_feature_files_never_hold_inf(tmp_path: Path) -> None:
    stamp = pd.Timestamp("2025-01-01", tz="UTC").as_unit("us")
    frame = pd.DataFrame(
        {
            "customer_id": ["P1", "P2"],
            "event_timestamp": [stamp, stamp],
            "created": [stamp, stamp],
            "monetary_30d": [np.inf, 2.0],
            "avg_order_value_365d": [-np.inf, np.nan],
        }
    )
    write_parquet_atomic(frame, tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert not np.isinf(back[["monetary_30d", "avg_order_value_365d"]].to_numpy()).any()
    assert back["monetary_30d"].tolist()[1] == 2.0 and np.isnan(back["monetary_30d"].iloc[0])


@pytest.mark.integration
def test_scoring_inf_and_nan_features_gives_an_encodable_answer(world: Path, monkeypatch) -> None:  # noqa: ANN001
    from serving.scoring import Scorer, load_state

    monkeypatch.setenv("PERSONA_DATA_DIR", str(world))
    scorer = Scorer(load_state(load_settings()))
    customers = pd.read_parquet(world / "features" / "customer_transactions.parquet")
    ids = customers.loc[customers["frequency_365d"] > 0, "customer_id"].astype(str).unique()[:4].tolist()
    real_read = scorer._read

    def poisoned(batch: list[str], now: datetime):  # noqa: ANN202
        result = real_read(batch, now)
        for index, name in enumerate(sorted(result.columns)):
            col = result.columns[name]
            if col.dtype.kind == "f":
                col[:] = [np.inf, -np.inf, np.nan, 1e308][index % 4]
        return result

    monkeypatch.setattr(scorer, "_read", poisoned)
    payload = scorer.score(ids, write_back=False, now=datetime.now(UTC))
    text = json.dumps(payload, allow_nan=False)  # what the service encodes; inf/NaN would raise here
    assert "Infinity" not in text and "NaN" not in text
    assert [item["status"] for item in payload["items"]] == ["ok"] * len(ids)
    for item in payload["items"]:
        for kind in ("churn", "conversion"):
            p = item[kind]["probability"]
            assert p is None or 0.0 <= p <= 1.0

"""Next best category through the real parts: `persona train all` registered a recommender champion in
the session's world; scoring answers each customer's lists with reasons (valid against the API schema),
the catalog tags carry the top category and the list, and batch and online agree."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.service.conftest import env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def state(world: Path):  # type: ignore[no-untyped-def]
    from configs.settings import load_settings
    from serving.scoring import load_state

    with env(PERSONA_DATA_DIR=str(world)):
        settings = load_settings()
        yield load_state(settings)


def test_recommender_champion_is_registered_on_its_service(state) -> None:  # type: ignore[no-untyped-def]
    loaded = state.models["recommend"]
    assert loaded.feature_service == "recommend_v1"
    assert loaded.bundle.level == "category" and len(loaded.bundle.items) == 8
    from artifacts.registry import client

    run = client(state.settings).get_run(loaded.run_id)
    assert {"test_recall_at_3", "popularity_test_recall_at_3", "buy_again_test_recall_at_3"} <= set(
        run.data.metrics
    )
    plots = {a.path for a in client(state.settings).list_artifacts(loaded.run_id, "plots")}
    assert {"plots/recall_at_k.png", "plots/ndcg_at_k.png"} <= plots


def test_score_returns_lists_with_reasons_and_tags(state) -> None:  # type: ignore[no-untyped-def]
    from serving.schemas import ScoreResponse
    from serving.scoring import Scorer

    bundle = state.models["recommend"].bundle
    ids = [c for c in list(bundle.customers)[:40] if c not in state.withdrawn][:20]
    payload = Scorer(state).score(ids, write_back=False, now=datetime.now(UTC))
    ScoreResponse.model_validate(payload)  # the contract the CRM codes against
    ok = [i for i in payload["items"] if i["status"] == "ok"]
    assert ok
    for item in ok:
        rec = item["recommendations"]
        assert rec["model_version"] == state.models["recommend"].version and rec["level"] == "category"
        assert len(rec["items"]) == 3 and rec["not_scored_reason"] is None
        scores = [e["score"] for e in rec["items"]]
        assert scores == sorted(scores, reverse=True)
        bought = set(bundle.items[bundle.counts[bundle.customers[item["customer_id"]]].indices])
        for e in rec["items"]:
            assert (e["kind"] == "buy_again") == (e["item"] in bought)
            assert e["reason"].startswith("bought ") if e["kind"] == "buy_again" else e["reason"]
        assert all(e["kind"] == "new" and e["item"] not in bought for e in rec["new"])
        assert item["tags"]["next_best_category"] == rec["items"][0]["item"]
        assert item["tags"]["next_best_categories"] == ", ".join(e["item"] for e in rec["items"])


def test_batch_and_online_recommend_the_same(state) -> None:  # type: ignore[no-untyped-def]
    from artifacts.catalog import latest_feature_frame
    from serving.batch import score_frame
    from serving.scoring import Scorer

    frame = latest_feature_frame(state.settings)
    frame = frame[~frame["customer_id"].isin(state.withdrawn)].head(30)
    tags, _, outputs = score_frame(state, frame)
    online = Scorer(state).score(frame["customer_id"].tolist(), write_back=False, now=datetime.now(UTC))
    by_id = {i["customer_id"]: i for i in online["items"] if i["status"] == "ok"}
    assert by_id
    for cid, best in zip(tags["customer_id"], tags["next_best_category"], strict=True):
        if cid in by_id:
            assert by_id[cid]["tags"]["next_best_category"] == best
    assert np.all(outputs.next_best != None)  # noqa: E711 - every customer gets a list

"""The one-customer fast paths change no answer: the full JSON of a few dozen requests (one customer with
reasons by default, explain false and true, unknown and withdrawn ids, a mixed request) is byte-identical
to what the general paths give on the same trained world.

The reference answers are computed in the test, with the fast paths swapped for the calls the service
made before them: `Booster.predict` for every LightGBM model (one thread, as before), scipy's row indexing
and sparse product for the recommender's history rows, and the recommender's scores computed again for
the lists instead of handed over from `next_best`.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.service.conftest import env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class _ViaBoosterPredict:
    """What the LightGBM models called per request before the single-row path."""

    def __init__(self, booster) -> None:  # type: ignore[no-untyped-def]
        self.booster = booster

    def raw(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_threads=1)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, pred_contrib=True, num_threads=1)


def _requests(ids: dict[str, list[str]]) -> list[tuple[list[str], bool | None]]:
    rng = random.Random(18)
    active, everyone = ids["active"], ids["all"]
    withdrawn = ids["withdrawn"][:3]
    requests: list[tuple[list[str], bool | None]] = [([c], None) for c in rng.sample(active, 24)]
    requests += [([c], None) for c in rng.sample(everyone, 8)]  # some without orders, leads or events
    requests += [([c], False) for c in rng.sample(active, 8)]
    requests += [([c], True) for c in rng.sample(everyone, 4)]
    requests += [([c], None) for c in withdrawn]
    requests += [(["no-such-customer"], None), (["no-such-customer"], False)]
    requests += [([active[0], "no-such-customer", active[0], *withdrawn[:1]], None)]
    requests += [(rng.sample(everyone, 12), None), (rng.sample(everyone, 40), False)]
    return requests


def _answers(scorer, requests) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [
        json.dumps(scorer.score(ids, write_back=False, now=NOW, explain=explain), allow_nan=False).encode()
        for ids, explain in requests
    ]


def test_answers_are_byte_identical_to_the_general_paths(
    world: Path, world_ids: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.classifier as classifier
    import models.clv as clv
    import models.recommend as recommend
    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    assert {"churn", "recommend"} <= set(scorer.state.models)  # the fast paths under test are served
    requests = _requests(world_ids)
    fast = _answers(scorer, requests)

    # the reference: the general paths, on the same loaded models
    monkeypatch.setattr(classifier, "single_row_of", lambda owner: _ViaBoosterPredict(owner.booster))
    monkeypatch.setattr(clv, "single_row_of", lambda owner: _ViaBoosterPredict(owner.booster))
    monkeypatch.setattr(recommend, "_dense_rows", lambda matrix, rows: matrix[rows].toarray())
    monkeypatch.setattr(
        recommend, "_rows_times", lambda matrix, rows, dense: np.asarray(matrix[rows] @ dense)
    )
    scores_once = recommend.Recommender.recommend
    monkeypatch.setattr(
        recommend.Recommender,
        "recommend",
        lambda self, ids, *, k=None, as_of_day=None, scores=None: scores_once(
            self, ids, k=k, as_of_day=as_of_day
        ),
    )
    reference = _answers(scorer, requests)

    items = [json.loads(a)["items"] for a in fast]
    statuses = {i["status"] for answer in items for i in answer}
    assert statuses == {"ok", "not_found", "consent_withdrawn"}, statuses
    # reasons were computed (the TreeSHAP path ran) and recommendation lists were built
    assert any(i["churn"] and i["churn"]["reasons"] for answer in items for i in answer)
    assert any(i["recommendations"] and i["recommendations"]["items"] for answer in items for i in answer)
    for (ids, explain), got, expected in zip(requests, fast, reference, strict=True):
        assert got == expected, f"request {ids[:3]} explain={explain}"

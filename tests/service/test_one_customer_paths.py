"""The one-customer paths against the vectorised ones they stand in for: a population rule evaluated by
the scalar engine for a 1-row request (`Population.mask`), and a customer's whole answer, tags included
(the one-customer tag evaluator up to `SCALAR_TAGS_UP_TO` rows, the vectorised catalog above), scored
alone and inside a bulk request."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from models import tag_expr as tx
from serving.scoring import SCALAR_TAGS_UP_TO, compile_populations, values_of
from tests.service.conftest import env

NOW = datetime(2026, 12, 1, tzinfo=UTC)

RULES = (
    "frequency_365d > 0",
    "is_open_lead = 1",
    "not (frequency_365d > 0) or channel = 'web'",
    "channel is null and recency_days < 30",
    "frequency_365d between 1 and 3 and channel in ('web', 'store')",
    "recency_days not between 0 and 10 or channel not in ('web')",
)
TYPES = {
    "frequency_365d": tx.NUMBER,
    "is_open_lead": tx.NUMBER,
    "recency_days": tx.NUMBER,
    "channel": tx.STRING,
}


def _columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(18)
    n = 64
    frequency = rng.integers(0, 5, n).astype(np.float64)
    frequency[::7] = np.nan  # missing
    recency = rng.uniform(-5, 60, n)
    recency[3::9] = np.nan
    channel = np.array([rng.choice(["web", "store", "app"]) for _ in range(n)], dtype=object)
    channel[::5] = None
    return {
        "frequency_365d": frequency,
        "is_open_lead": rng.integers(0, 2, n),  # an integer column, as a flag can arrive
        "recency_days": recency,
        "channel": channel,
    }


@pytest.mark.parametrize("rule", RULES)
def test_a_population_of_one_row_is_the_vectorised_rule(rule: str) -> None:
    population = compile_populations({"churn": rule}, feature_types=TYPES)["churn"]
    assert population.scalar is not None  # the scalar path is the one under test
    columns = _columns()
    n = len(columns["channel"])
    every = population.mask(columns, n)
    assert every.any() and not every.all(), "the rule should split the rows"  # a test that can fail
    one = [population.mask({k: v[i : i + 1] for k, v in columns.items()}, 1) for i in range(n)]
    assert all(m.dtype == bool and m.shape == (1,) for m in one)
    assert [bool(m[0]) for m in one] == every.tolist()


def test_one_rows_values_are_the_rows_values_read_with_an_index() -> None:
    columns = {
        **_columns(),
        "flag": np.array([True, False] * 32),
        "empty": np.full(64, np.nan),
        "count": np.arange(64, dtype=np.int64),
    }
    names = list(columns)
    for row in range(64):
        one = values_of(columns, names, np.array([row]))
        many = values_of(columns, names, np.array([row, 0]))  # the indexed path (more than one row)
        assert one.shape == (1, len(names)) and one.dtype == object
        # same values of the same Python types (float, int, bool, str, None); NaN compared by its repr
        assert [(type(v), repr(v)) for v in one[0]] == [(type(v), repr(v)) for v in many[0]], row


@pytest.mark.integration
@pytest.mark.slow
def test_a_customer_alone_is_answered_as_inside_a_bulk_request(
    world: Path, world_ids: dict[str, list[str]]
) -> None:
    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    rng = random.Random(18)
    some = [*rng.sample(world_ids["active"], 20), *rng.sample(world_ids["all"], 12), "no-such-customer"]
    ids = list(dict.fromkeys(some))  # a bulk answer has one item per distinct id
    assert len(ids) > SCALAR_TAGS_UP_TO  # the bulk request takes the vectorised tags
    bulk = scorer.score(ids, write_back=False, now=NOW, explain=True)["items"]
    alone = [scorer.score([c], write_back=False, now=NOW, explain=True)["items"][0] for c in ids]
    assert {i["status"] for i in alone} == {"ok", "not_found"}
    outside = [i for i in alone if i["status"] == "ok" and i["conversion"]["not_scored_reason"]]
    assert outside and any(i["churn"]["not_scored_reason"] is None for i in alone)  # both sides of a rule
    assert all(i["tags"] for i in alone if i["status"] == "ok")
    for one, many in zip(alone, bulk, strict=True):
        assert json.dumps(one, allow_nan=False) == json.dumps(many, allow_nan=False), one["customer_id"]

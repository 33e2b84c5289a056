"""The scoring API through BentoML's ASGI app (in process): contract, auth, defined outcomes for bad input,
write-back through the outbox, and 503s when a dependency is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.service.conftest import API_KEY, env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _client():  # type: ignore[no-untyped-def]
    # One app per process: BentoML registers its Prometheus metrics globally. Scenarios that need a
    # differently configured service run a real server (tests/service/test_service_server.py).
    from starlette.testclient import TestClient

    from serving.service import PersonaService

    return TestClient(PersonaService.to_asgi(), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(world: Path) -> Iterator[object]:
    with (
        env(
            PERSONA_DATA_DIR=str(world),
            PERSONA_API_KEYS=API_KEY,
            PERSONA_SERVING__DISPATCH_IN_SERVICE="false",
        ),
        _client() as c,
    ):
        yield c


def test_health_metrics_and_docs_are_open(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    # Which models are loaded, with the FeatureService each was trained on, and why the others are not.
    body = ready.json()
    assert body["ready"] is True
    assert body["models"]["churn"]["feature_service"] == "churn_v1"
    assert set(body["models"]) == {"segments", "churn", "conversion", "recommend"}
    assert all(why.startswith("no champion for persona-") for why in body["not_loaded"].values())
    assert client.get("/metrics").status_code == 200
    spec = client.get("/docs.json").json()
    assert spec["paths"]["/v1/score"]["post"]["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": f"Basic {API_KEY}"}],
)
def test_scoring_needs_a_valid_key(client, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/score", json={"customer_ids": ["x"]}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_score_known_customer_has_every_part(client, world_ids) -> None:  # type: ignore[no-untyped-def]
    from artifacts.catalog import load_catalog
    from configs.settings import load_settings

    cid = world_ids["active"][0]
    response = client.post("/v1/score", json={"customer_ids": [cid]}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scored"] == 1 and body["not_found"] == 0
    assert set(body["model_versions"]) == {"segments", "churn", "conversion", "recommend"}
    (item,) = body["items"]
    assert item["customer_id"] == cid and item["status"] == "ok"
    assert item["segment"]["persona"] and item["segment"]["segment_id"] is not None
    churn = item["churn"]
    assert 0.0 <= churn["probability"] <= 1.0
    assert churn["tier"] in ("high", "medium", "low")
    assert 1 <= len(churn["reasons"]) <= 3
    assert {"feature", "value", "contribution"} <= set(churn["reasons"][0])
    catalog = load_catalog(load_settings())
    assert set(item["tags"]) == set(catalog.keys)
    assert item["tags"]["churn_risk"] == churn["tier"]  # the model tag carries the model's tier
    assert item["tags"]["persona_name"] == item["segment"]["persona"]
    assert set(item["feature_freshness"]) >= {"customer_transactions", "customer_engagement"}


def test_unknown_customer_is_a_per_item_not_found(client, world_ids) -> None:  # type: ignore[no-untyped-def]
    known = world_ids["active"][1]
    response = client.post("/v1/score", json={"customer_ids": ["P-does-not-exist", known]}, headers=AUTH)
    assert response.status_code == 200
    items = {i["customer_id"]: i for i in response.json()["items"]}
    assert items["P-does-not-exist"]["status"] == "not_found"
    assert items["P-does-not-exist"].get("churn") is None
    assert items[known]["status"] == "ok"


def test_withdrawn_consent_is_neither_scored_nor_written_back(client, world, world_ids) -> None:  # type: ignore[no-untyped-def]
    cid = world_ids["withdrawn"][0]
    response = client.post("/v1/score", json={"customer_ids": [cid], "write_back": True}, headers=AUTH)
    assert response.status_code == 200
    (item,) = response.json()["items"]
    assert item["status"] == "consent_withdrawn"
    assert item["churn"] is None and item["tags"] == {}
    assert response.json()["queued_changes"] == 0
    engine = sa.create_engine(f"sqlite:///{world / 'state' / 'persona.sqlite'}")
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        for table in tables:
            cols = [c["name"] for c in sa.inspect(conn).get_columns(table)]
            if "customer_id" in cols:
                n = conn.execute(
                    sa.text(f"select count(*) from {table} where customer_id = :c"), {"c": cid}
                ).scalar()
                if table == "consent_withdrawals":  # the consent list: the one place that must name them
                    assert n == 1, "the withdrawn customer is missing from the consent list"
                    continue
                assert n == 0, f"{table} holds a withdrawn customer"


def test_duplicates_are_answered_once_in_request_order(client, world_ids) -> None:  # type: ignore[no-untyped-def]
    a, b = world_ids["active"][2], world_ids["active"][3]
    response = client.post("/v1/score", json={"customer_ids": [b, a, b]}, headers=AUTH)
    assert [i["customer_id"] for i in response.json()["items"]] == [b, a]


def test_the_business_keys_name_the_same_customer(client, world, world_ids) -> None:  # type: ignore[no-untyped-def]
    """A CRM asks by its own contact id (or a lead id): the answer is the customer's, and says both ids."""
    import pandas as pd

    idmap = pd.read_parquet(world / "clean" / "identity_map.parquet")
    active = set(world_ids["active"])
    contacts = idmap[(idmap["source"] == "contacts") & idmap["customer_id"].isin(active)]
    contact_id, cid = contacts["source_key"].iloc[0], contacts["customer_id"].iloc[0]
    assert contact_id == contacts["source_record_id"].iloc[0] and not contact_id.startswith("P")
    leads = idmap[(idmap["source"] == "leads") & (idmap["customer_id"] != cid)]
    lead_id, lead_cid = leads["source_key"].iloc[0], leads["customer_id"].iloc[0]
    body = client.post(
        "/v1/score", json={"customer_ids": [contact_id, cid, lead_id, "C-unknown"]}, headers=AUTH
    ).json()
    by_contact, by_persona, by_lead, unknown = body["items"]
    assert by_contact["customer_id"] == by_persona["customer_id"] == cid
    assert (by_contact["requested_id"], by_persona["requested_id"]) == (contact_id, cid)
    assert by_contact["status"] == "ok" and by_contact["churn"] == by_persona["churn"]
    assert by_lead["customer_id"] == lead_cid and by_lead["requested_id"] == lead_id
    assert unknown["status"] == "not_found" and unknown["customer_id"] == "C-unknown"
    # no email or phone is kept as a key: only contact ids, lead ids and customer numbers
    keys = idmap["source_key"].dropna().astype(str)
    assert not keys.str.contains("@").any() and not keys.str.startswith("+").any()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"customer_ids": []}, "empty list"),
        ({"customer_ids": [f"P{i}" for i in range(1001)]}, "more than 1,000 ids"),
        ({"customer_ids": "P1"}, "not a list"),
        ({"customer_ids": [1, 2]}, "numbers, not strings"),
        ({"customer_ids": ["P1"], "write_back": "maybe"}, "write_back not a boolean"),
        ({}, "no customer_ids"),
    ],
)
def test_bad_requests_get_400_with_a_message(client, payload, why) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/score", json=payload, headers=AUTH)
    assert response.status_code == 400, why
    assert response.json()["error"], why


def test_malformed_json_gets_4xx(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/v1/score", content=b'{"customer_ids": [', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500


def test_write_back_queues_changes_once(client, world, world_ids) -> None:  # type: ignore[no-untyped-def]
    ids = world_ids["active"][10:15]
    first = client.post("/v1/score", json={"customer_ids": ids, "write_back": True}, headers=AUTH).json()
    assert first["queued_changes"] > 0
    assert sum(i["written_back"] for i in first["items"]) == first["queued_changes"]
    # Nothing changed since: the same call records and queues nothing new.
    second = client.post("/v1/score", json={"customer_ids": ids, "write_back": True}, headers=AUTH).json()
    assert second["queued_changes"] == 0
    engine = sa.create_engine(f"sqlite:///{world / 'state' / 'persona.sqlite'}")
    with engine.connect() as conn:
        queued = conn.execute(
            sa.text(
                "select count(*) from crm_outbox where customer_id in ({})".format(
                    ",".join(f"'{i}'" for i in ids)
                )
            )
        ).scalar()
    assert queued == first["queued_changes"]


def test_churn_endpoint_is_the_narrow_view(client, world_ids) -> None:  # type: ignore[no-untyped-def]
    cid = world_ids["active"][4]
    item = client.post("/v1/churn", json={"customer_ids": [cid]}, headers=AUTH).json()["items"][0]
    assert item["churn"]["probability"] is not None
    assert item["conversion"] is None and item["tags"] == {}


def test_stale_features_are_scored_but_degraded(world, world_ids) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    cid = world_ids["active"][5]
    # judged against the data's clock (the online store's materialized end), not the wall clock: the
    # world's data ends 2025-12-31, years before this test runs, and its answers are fresh
    answer = scorer.score([cid], write_back=False, now=datetime.now(UTC))
    fresh = answer["items"][0]
    assert answer["as_of"] is not None and answer["as_of"].startswith("2025-12-31")
    assert not any("stale" in w for w in fresh["warnings"])
    assert all(v["status"] != "stale" for v in fresh["feature_freshness"].values())
    late = scorer.score(
        [cid], write_back=False, now=datetime.now(UTC), as_of=datetime(2027, 6, 1, tzinfo=UTC)
    )
    late = late["items"][0]
    assert late["status"] == "ok" and late["churn"]["probability"] is not None
    assert late["degraded"] is True
    assert any("stale" in w for w in late["warnings"])
    assert late["feature_freshness"]["customer_transactions"]["status"] == "stale"
    assert fresh["feature_freshness"]["customer_transactions"]["status"] == "present"


def test_a_missing_view_degrades_only_the_models_that_scored_on_it(world, world_ids) -> None:  # type: ignore[no-untyped-def]
    """A view with no row for a customer degrades the answer only where a model scored that customer on
    defaults for it: a customer outside conversion's population (no open lead) is not degraded."""
    from datetime import UTC, datetime

    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    items = scorer.score(world_ids["all"][:300], write_back=False, now=datetime.now(UTC))["items"]
    seen_outside = 0
    for item in (i for i in items if i["status"] == "ok"):
        status = {view: f["status"] for view, f in item["feature_freshness"].items()}
        scored = {"segments": (item["segment"] or {}).get("segment_id") is not None}
        for kind in ("churn", "conversion", "value"):
            part = item.get(kind) or {}
            scored[kind] = part.get("probability", part.get("predicted_value")) is not None
        used = {
            view
            for kind, views in scorer.views_of_kind.items()
            if scored.get(kind, kind not in ("churn", "conversion", "value", "segments"))
            and kind in scorer.state.models
            for view in views
        }
        expected = any(s == "stale" for s in status.values()) or any(
            status.get(view) == "not_found" for view in used
        )
        assert item["degraded"] is expected, (item["customer_id"], status, scored, item["warnings"])
        seen_outside += int(not scored["conversion"])
    assert seen_outside > 0, "the world needs customers conversion did not score"


def test_a_write_back_without_explain_still_writes_the_reasons_in_words(world, world_ids) -> None:  # type: ignore[no-untyped-def]
    """The reasons-in-words tags are left out of a bulk read (explain false), never out of a write-back:
    the CRM field must not be cleared because a request did not ask for reasons."""
    from datetime import UTC, datetime

    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    assert set(scorer.worded_tags) == {"churn_reasons_text", "conversion_reasons_text"}
    ids = world_ids["active"][-4:]
    now = datetime(2026, 1, 2, tzinfo=UTC)
    explained = scorer.score(ids, write_back=False, now=now, explain=True)["items"]
    read = scorer.score(ids, write_back=False, now=now, explain=False)["items"]
    written = scorer.score(ids, write_back=True, now=now, explain=False)["items"]
    for e, r, w in zip(explained, read, written, strict=True):
        assert w["tags"] == e["tags"]
        assert r["tags"] == {k: v for k, v in e["tags"].items() if k not in scorer.worded_tags}
        assert w["churn"]["reasons"] == [] and e["churn"]["reasons"]
    assert any(w["tags"]["churn_reasons_text"] for w in written)


def test_responses_are_exactly_the_declared_model(client, world_ids) -> None:  # type: ignore[no-untyped-def]
    """The service encodes the scorer's payload directly: it must be what `ScoreResponse` would give,
    field for field, for every kind of item, small (scalar tags) and large (vectorised tags) requests."""
    from serving.schemas import ScoreResponse

    active = world_ids["active"]
    mixed = [active[20], "P-does-not-exist", world_ids["withdrawn"][0], active[21]]
    for path, ids in [("/v1/score", mixed), ("/v1/churn", mixed), ("/v1/score", [*active[30:60], "P-nope"])]:
        response = client.post(path, json={"customer_ids": ids}, headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert ScoreResponse.model_validate(body).model_dump(mode="json") == body, path


def _same_json(a: object, b: object, at: str = "$") -> None:
    """JSON values equal with their JSON types: 1 and 1.0, or 1 and true, are different answers."""
    assert type(a) is type(b), f"{at}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{at}: keys {list(a)} != {list(b)}"  # type: ignore[arg-type]
        for key in a:
            _same_json(a[key], b[key], f"{at}.{key}")  # type: ignore[index]
    elif isinstance(a, list):
        assert len(a) == len(b), f"{at}: {len(a)} != {len(b)} entries"  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            _same_json(x, y, f"{at}[{i}]")
    else:
        assert a == b, f"{at}: {a!r} != {b!r}"


@pytest.mark.parametrize("explain", [False, True])
@pytest.mark.parametrize("size", [1, 100, 1000])
def test_the_encoded_answer_is_the_declared_models_answer(client, world, world_ids, size, explain) -> None:  # type: ignore[no-untyped-def]
    """The service encodes the scorer's payload itself (serving/schemas.py `response_json`): the bytes
    sent are, value for value and type for type, the JSON `ScoreResponse` gives for the same payload
    (scored in process here), for 1, 100 and 1,000 ids (scored, unknown and withdrawn), with and
    without reasons."""
    from datetime import UTC, datetime

    from configs.settings import load_settings
    from serving.schemas import ScoreResponse
    from serving.scoring import Scorer, load_state

    active, withdrawn = world_ids["active"], world_ids["withdrawn"]
    pool = [active[0], withdrawn[0], "P-does-not-exist", *active, *withdrawn, *world_ids["all"]]
    pool += [f"P-unknown-{i}" for i in range(1000)]
    ids = list(dict.fromkeys(pool))[:size]
    response = client.post("/v1/score", json={"customer_ids": ids, "explain": explain}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    payload = scorer.score(ids, write_back=False, now=datetime.now(UTC), explain=explain)
    payload["model_set"] = response.headers["X-Persona-Model-Set"]
    declared = json.loads(ScoreResponse.model_validate(payload).model_dump_json())
    body = json.loads(response.content)
    _same_json(body, declared)
    assert len(body["items"]) == size and body["scored"] >= min(size, 50)
    if size > 1:
        assert body["not_found"] and body["consent_withdrawn"]
    reasons = [i["churn"]["reasons"] for i in body["items"] if i["status"] == "ok"]
    assert any(reasons) == explain


def test_one_by_one_and_together_give_the_same_answers(world, world_ids) -> None:  # type: ignore[no-untyped-def]
    """Small requests take the per-customer paths (dict lookups, scalar tag engine), large ones the
    vectorised paths: a customer's answer must not depend on which."""
    from datetime import UTC, datetime

    from configs.settings import load_settings
    from serving.scoring import Scorer, load_state

    with env(PERSONA_DATA_DIR=str(world)):
        scorer = Scorer(load_state(load_settings()))
    now = datetime(2026, 1, 2, tzinfo=UTC)
    ids = world_ids["all"][:100]  # > the scalar-tag and dict-lookup thresholds, leads and non-leads alike
    together = scorer.score(ids, write_back=False, now=now)["items"]
    alone = [scorer.score([cid], write_back=False, now=now)["items"][0] for cid in ids]
    for one, many in zip(alone, together, strict=True):
        for kind in ("churn", "conversion"):
            if one[kind]["probability"] is not None:
                assert one[kind]["probability"] == pytest.approx(many[kind]["probability"], abs=1e-12)
                for r1, r2 in zip(one[kind]["reasons"], many[kind]["reasons"], strict=True):
                    assert r1["contribution"] == pytest.approx(r2["contribution"], abs=1e-9)
                one[kind]["probability"] = many[kind]["probability"]
                one[kind]["reasons"] = many[kind]["reasons"]
        assert one == many
    assert sum(i["conversion"]["probability"] is not None for i in together) > 0
    assert sum(i["churn"]["probability"] is not None for i in together) > 0


def test_explain_defaults_by_size_and_never_changes_a_score(client, world_ids) -> None:  # type: ignore[no-untyped-def]
    """Reasons on demand: `explain` defaults to true up to serving.explain_up_to ids (100) and false
    above; asking for them or not changes no probability, tier or tag."""
    active = world_ids["active"]
    big = (active * 3)[:150] if len(active) < 150 else active[:150]

    def post(ids, **extra):  # type: ignore[no-untyped-def]
        r = client.post("/v1/score", json={"customer_ids": ids, **extra}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.headers["x-persona-model-set"] == r.json()["model_set"]
        return {i["customer_id"]: i for i in r.json()["items"]}

    def has_reasons(items) -> bool:  # type: ignore[no-untyped-def]
        return any(i["churn"] and i["churn"]["reasons"] for i in items.values())

    small = post(active[:5])
    assert has_reasons(small)
    assert not has_reasons(post(active[:5], explain=False))
    default_big = post(big)
    assert not has_reasons(default_big)
    explained_big = post(big, explain=True)
    assert has_reasons(explained_big)
    worded = {"churn_reasons_text", "conversion_reasons_text"}  # read reasons in words: explained only
    for cid, item in default_big.items():
        other = explained_big[cid]
        assert item["churn"]["probability"] == other["churn"]["probability"]
        assert not worded & set(item["tags"]) and worded <= set(other["tags"])
        assert item["tags"] == {k: v for k, v in other["tags"].items() if k not in worded}
        assert item["value"]["predicted_value"] == other["value"]["predicted_value"]
    assert any(i["tags"]["churn_reasons_text"] for i in explained_big.values())
    assert (
        client.post(
            "/v1/score", json={"customer_ids": active[:1], "explain": "yes"}, headers=AUTH
        ).status_code
        == 400
    )

"""What the service tells operators: its Prometheus metrics and its public OpenAPI document."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from serving.metrics import PROBABILITY_BUCKETS, ServiceMetrics


def _item(status: str, churn: float | None = None, conversion: float | None = None, degraded=False):
    def score(p):
        return None if p is None else {"probability": p}

    return {
        "status": status,
        "degraded": degraded,
        "churn": score(churn) if status == "ok" else None,
        "conversion": score(conversion) if status == "ok" else None,
    }


def _payload(items):
    return {
        "items": items,
        "scored": sum(i["status"] == "ok" for i in items),
        "not_found": sum(i["status"] == "not_found" for i in items),
        "consent_withdrawn": sum(i["status"] == "consent_withdrawn" for i in items),
    }


def _sample(registry, name, labels=None):
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def test_answers_are_counted_by_status_and_degraded_and_probabilities_observed():
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    payload = _payload(
        [
            _item("ok", churn=0.03, conversion=None, degraded=True),
            _item("ok", churn=0.5, conversion=0.97),
            _item("not_found"),
            _item("not_found"),
            _item("consent_withdrawn"),
        ]
    )
    metrics.answered("score", payload)
    assert _sample(registry, "persona_score_items_total", {"endpoint": "score", "status": "ok"}) == 2
    assert _sample(registry, "persona_score_items_total", {"endpoint": "score", "status": "not_found"}) == 2
    assert (
        _sample(registry, "persona_score_items_total", {"endpoint": "score", "status": "consent_withdrawn"})
        == 1
    )
    assert _sample(registry, "persona_score_degraded_items_total", {"endpoint": "score"}) == 1
    churn = {"model": "churn"}
    assert _sample(registry, "persona_model_probability_count", churn) == 2
    assert _sample(registry, "persona_model_probability_sum", churn) == pytest.approx(0.53)
    assert _sample(registry, "persona_model_probability_bucket", {**churn, "le": "0.02"}) == 0
    assert _sample(registry, "persona_model_probability_bucket", {**churn, "le": "0.05"}) == 1
    assert _sample(registry, "persona_model_probability_bucket", {**churn, "le": "0.5"}) == 2
    conversion = {"model": "conversion"}
    assert _sample(registry, "persona_model_probability_count", conversion) == 1  # None is not observed
    metrics.answered("score", payload)  # again: the labelled series kept by the metrics add up
    metrics.answered("churn", payload)
    assert _sample(registry, "persona_score_items_total", {"endpoint": "score", "status": "ok"}) == 4
    assert _sample(registry, "persona_score_items_total", {"endpoint": "churn", "status": "ok"}) == 2
    assert _sample(registry, "persona_score_degraded_items_total", {"endpoint": "score"}) == 2
    assert _sample(registry, "persona_model_probability_count", churn) == 6
    assert _sample(registry, "persona_model_probability_count", conversion) == 3


@pytest.mark.parametrize("n", [3, 1000])
def test_bulk_observation_equals_observing_one_by_one(n):
    rng = np.random.default_rng(n)
    # edges included: a value equal to a bound falls in that bucket (le = less than or equal)
    values = np.concatenate([rng.beta(0.6, 4, size=n), np.asarray(PROBABILITY_BUCKETS)])
    bulk_registry, single_registry = CollectorRegistry(), CollectorRegistry()
    bulk, single = ServiceMetrics(bulk_registry), ServiceMetrics(single_registry)
    bulk._observe_many(bulk.probability.labels("churn"), values)
    for v in values:
        single.probability.labels("churn").observe(float(v))
    for le in [*map(str, PROBABILITY_BUCKETS), "+Inf"]:
        labels = {"model": "churn", "le": le}
        assert _sample(bulk_registry, "persona_model_probability_bucket", labels) == _sample(
            single_registry, "persona_model_probability_bucket", labels
        ), le
    assert _sample(bulk_registry, "persona_model_probability_sum", {"model": "churn"}) == pytest.approx(
        _sample(single_registry, "persona_model_probability_sum", {"model": "churn"})
    )


def test_dispatcher_rounds_feed_counters_and_outbox_gauges():
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    stats = SimpleNamespace(delivered=5, retried=2, dead=1)
    counts = {"pending": 67_058, "dead": 3, "delivered": 10, "unmatched": 412}
    metrics.dispatched(stats, counts, outbox="crm")
    # counts not read this round
    metrics.dispatched(SimpleNamespace(delivered=1, retried=0, dead=0), None, outbox="crm")
    assert _sample(registry, "persona_crm_delivered_total") == 6
    assert _sample(registry, "persona_crm_retried_total") == 2
    assert _sample(registry, "persona_crm_dead_lettered_total") == 1
    crm = {"outbox": "crm"}
    assert _sample(registry, "persona_outbox_pending", crm) == 67_058
    assert _sample(registry, "persona_outbox_dead_letters", crm) == 3
    assert _sample(registry, "persona_outbox_unmatched", crm) == 412


def test_every_outbox_the_service_delivers_reports_its_own_gauges(tmp_path, monkeypatch):
    """CRM tags, trigger actions and segment lists (the README's example configures all three): each
    dispatcher's loop observer sets its outbox's gauges from its own table; only the CRM tags'
    deliveries count in `persona_crm_*`."""
    from datetime import UTC, datetime
    from pathlib import Path

    import sqlalchemy as sa
    import yaml

    from configs.settings import load_settings
    from serving.changes import TagChange
    from serving.dispatcher import DispatchStats, service_dispatchers

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    (tmp_path / "raw").mkdir()
    sa.create_engine(f"sqlite:///{tmp_path}/raw/crm.sqlite").connect().close()  # the embedded SQL CRM
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\ntriggers:\n", 1)[1].split("```", 1)[0]
    dispatchers = dict(service_dispatchers(load_settings(**yaml.safe_load("triggers:\n" + block))))
    queued = {"crm": 3, "triggers": 2, "segments": 1}
    assert set(dispatchers) == set(queued)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    for name, n in queued.items():
        outbox = dispatchers[name].outbox
        changes = [
            TagChange(f"P{i}", "rfm_r", "persona_rfm_r", None, "3", at, "rule:rfm_r@v1") for i in range(n)
        ]
        with outbox.engine.begin() as conn:
            assert outbox.enqueue(conn, changes) == n
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    for name, dispatcher in dispatchers.items():
        metrics.observer(name)(DispatchStats(delivered=1), dispatcher.outbox.counts())
    for name, n in queued.items():
        outbox = {"outbox": name}
        assert _sample(registry, "persona_outbox_pending", outbox) == n, name
        assert _sample(registry, "persona_outbox_dead_letters", outbox) == 0, name
        assert _sample(registry, "persona_outbox_unmatched", outbox) == 0, name
    assert _sample(registry, "persona_crm_delivered_total") == 1


def test_the_versions_served_are_an_info_metric():
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    loaded = SimpleNamespace(version="4", feature_service="churn_v1")
    metrics.models_served({"churn": loaded})
    labels = {"model": "churn", "version": "4", "feature_service": "churn_v1"}
    assert _sample(registry, "persona_model_info", labels) == 1


def test_the_dispatcher_loop_reports_each_round(tmp_path):
    import threading

    from serving.dispatcher import Dispatcher, DispatchStats

    seen = []

    class OneRound(Dispatcher):
        def __init__(self):  # only what run_forever touches
            self.poll_seconds = 0.01
            self.paused_until = 0.0
            self.clock = __import__("time").time
            self.outbox = SimpleNamespace(
                counts=lambda: {"pending": 7, "dead": 1},
                next_due=lambda: None,
                unmatched_customers=lambda: [],
            )

        def run_once(self):
            return DispatchStats(claimed=0, delivered=2)

    stop = threading.Event()

    def observe(stats, counts):
        seen.append((stats.delivered, counts))
        if len(seen) == 2:
            stop.set()

    OneRound().run_forever(stop, poll_seconds=0.01, observe=observe)
    assert seen[0] == (2, {"pending": 7, "dead": 1})
    assert seen[1] == (2, None)  # counts are read at most every OBSERVE_COUNTS_SECONDS


# ------------------------------------------------------------------------------------------- OpenAPI
@pytest.fixture(scope="module")
def bentoml_document():
    import json

    from serving.service import PersonaService

    # as served: through JSON (status codes become strings)
    return json.loads(json.dumps(PersonaService.openapi_spec.asdict()))


def test_the_public_document_is_personas_own(bentoml_document):
    import copy

    from serving.openapi import package_version, public_document

    spec = public_document(copy.deepcopy(bentoml_document))
    assert spec["info"]["title"] == "Persona scoring API"
    assert "churn" in spec["info"]["description"] and "BentoML" not in str(spec["info"])
    assert spec["info"]["version"] == package_version() != "0+unknown"
    score = spec["paths"]["/v1/score"]["post"]
    for code in ("400", "401", "413", "429", "503", "504"):
        assert code in score["responses"], code
        assert code in spec["paths"]["/v1/churn"]["post"]["responses"], code
    assert "Retry-After" in score["responses"]["503"]["headers"]
    assert score["security"] == [{"bearerAuth": []}]
    assert spec["components"]["schemas"]["PersonaError"]["required"] == ["error", "detail"]


def test_request_examples_are_valid_requests(bentoml_document):
    import copy

    import jsonschema

    from serving.openapi import public_document

    spec = public_document(copy.deepcopy(bentoml_document))
    for path in ("/v1/score", "/v1/churn"):
        media = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema = {**media["schema"], "components": spec["components"]}
        if "$ref" in schema:  # resolve against the document's components
            schema = {"$ref": schema["$ref"], "components": spec["components"]}
        assert media["examples"]
        for example in media["examples"].values():
            jsonschema.validate(example["value"], schema)


def test_the_benchmark_endpoint_is_off_by_default_and_never_public(bentoml_document):
    import bentoml

    from configs.settings import load_settings
    from serving.openapi import public_document
    from serving.service import PersonaService, _service_class

    assert "noop" not in PersonaService.apis
    assert "/v1/noop" not in bentoml_document["paths"]
    bench = bentoml.service(name="persona_bench")(
        _service_class(load_settings(serving={"benchmark_endpoint": True}))
    )
    assert "noop" in bench.apis
    spec = bench.openapi_spec.asdict()
    assert "/v1/noop" in spec["paths"]
    assert "/v1/noop" not in public_document(spec)["paths"]


def test_the_grafana_dashboard_charts_every_persona_metric_and_only_real_ones():
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(persona_[a-z_]+)", e)}
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exposed = {f.name + sfx for f in registry.collect() for sfx in suffixes[f.type]}
    assert used <= exposed, used - exposed
    families = {family.name for family in registry.collect()}
    charted = {
        f for f in families if any(re.search(rf"\b{f}(_total|_bucket|_sum|_count)?\b", e) for e in exprs)
    }
    assert charted == families, families - charted
    # one series per outbox (crm, triggers, segments), never one number that mixes them
    outboxes = [e for e in exprs if "persona_outbox_" in e]
    assert len(outboxes) == 3 and all(e.startswith("max by (outbox) (") for e in outboxes), outboxes
    bentoml_metrics = {m for e in exprs for m in re.findall(r"\b(bentoml_[a-z_]+)", e)}
    assert bentoml_metrics <= {
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds_bucket",
    }

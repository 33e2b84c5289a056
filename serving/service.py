"""The scoring service the CRM calls: `bentoml serve serving.service:PersonaService` (or `persona serve`).

At start-up it loads the champion of each model from the MLflow registry, the FeatureService each was
trained on (recorded on the model version), the tag catalog and its cut points: one model set. A
background thread polls the registry aliases and the catalog files (`serving.reload_poll_seconds`) and
swaps a changed set in whole (serving/reload.py); every answer names the set and versions it came from.
If a dependency is not there yet (no champion, no feature store), the service still starts: health
answers, `/readyz` and scoring answer 503 with a JSON body saying what is missing, and loading is
retried by the same thread.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import bentoml
from pydantic import Field
from sqlalchemy.exc import OperationalError
from starlette.responses import JSONResponse, Response

from configs.settings import Settings, load_settings
from core.errors import FeatureStoreError
from core.logs import configure
from serving.admission import AdmissionMiddleware
from serving.auth import ApiKeyMiddleware, load_api_keys
from serving.campaign_api import make_app
from serving.dashboard.app import Dashboard
from serving.dispatcher import service_dispatchers
from serving.http_guard import RequestGuard
from serving.metrics import ServiceMetrics
from serving.openapi import OpenApiMiddleware
from serving.readiness import REPORT, ReadinessMiddleware
from serving.reload import ModelSet, Reloader, registry_fingerprint
from serving.schemas import CustomerIds, Explain, ScoreResponse, WriteBack, response_json
from serving.scoring import Scorer, load_state

log = logging.getLogger("persona.serving")

MODEL_SET_HEADER = "X-Persona-Model-Set"  # the model set that answered (also in `/readyz`)
# How long the scoring thread may hold the interpreter lock before the event loop (health, metrics,
# 429s) gets it back: after each socket call the loop waits for it, up to CPython's default 5 ms. With
# 1 ms, a loopback probe beside a CPU-bound thread had p99 ~50 ms instead of ~97 ms (ad-hoc, load 12).
GIL_SWITCH_SECONDS = 0.001


def _unavailable(error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=503, headers={"Retry-After": "10"})


class _PersonaService:
    """Scores customers: segment and persona, churn and conversion with reasons, every catalog tag."""

    def __init__(self) -> None:
        configure()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)  # this worker process only
        self.settings: Settings = load_settings()
        self.metrics = ServiceMetrics.shared()
        self._stop = threading.Event()
        self._withdrawn: frozenset[str] | None = None  # the consent watcher's latest list
        self.reloader: Reloader[Scorer] = Reloader(
            fingerprint=lambda: registry_fingerprint(self.settings),
            build=lambda: Scorer(load_state(self.settings)),
            poll_seconds=self.settings.serving.reload_poll_seconds,
            on_swap=self._swapped,
            on_error=self._load_failed,
        )
        self.reloader.check()  # the first set, before the worker takes traffic
        threading.Thread(
            target=self.reloader.run, args=(self._stop,), name="model-reload", daemon=True
        ).start()
        DASHBOARD.attach_scorer(lambda: self.scorer)
        threading.Thread(target=DASHBOARD.warm, name="dashboard-warm", daemon=True).start()
        self._start_consent_watcher()
        if self.settings.serving.dispatch_in_service:
            self._start_dispatcher()

    # -- dependencies -------------------------------------------------------------------------------
    @property
    def scorer(self) -> Scorer | None:
        current = self.reloader.current
        return None if current is None else current.value

    @property
    def load_error(self) -> str | None:
        return self.reloader.last_error

    def _swapped(self, old: ModelSet[Scorer] | None, new: ModelSet[Scorer]) -> None:
        """A new model set serves: carry the consent list over, report it, let go of the old one."""
        state = new.value.state
        if self._withdrawn is not None:
            state.withdrawn = self._withdrawn
        REPORT.set({"ready": True, "model_set": new.id, **state.readiness()})
        self.metrics.models_served(state.models, previous=None if old is None else old.value.state.models)
        # Models, Feast and MLflow leave ~10^6 long-lived objects: moved out of the collector's sight,
        # they no longer lengthen every full collection (the tail of request latency). The old set's
        # objects are unfrozen first, so they can be collected once its last request has finished.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("scoring ready: model set %s, models %s", new.id, state.versions)

    def _load_failed(self, error: str) -> None:
        if self.reloader.current is None:
            REPORT.set({"ready": False, "detail": error})

    def _start_consent_watcher(self) -> None:
        """A withdrawal (consent list in the state DB) answers `consent_withdrawn` within seconds."""
        from serving.consent import ConsentWatcher

        def swap(ids: frozenset[str]) -> None:
            self._withdrawn = ids
            scorer = self.scorer
            if scorer is not None:
                scorer.state.withdrawn = ids

        watcher = ConsentWatcher(
            self.settings, on_change=swap, poll_seconds=self.settings.serving.consent_poll_seconds
        )
        threading.Thread(target=watcher.run, args=(self._stop,), name="consent-watcher", daemon=True).start()

    def _start_dispatcher(self) -> None:
        def run(name: str, dispatcher: Any) -> None:
            try:
                dispatcher.run_forever(
                    self._stop,
                    poll_seconds=self.settings.crm.poll_seconds,
                    observe=self.metrics.observer(name),  # each outbox's gauges
                )
            except Exception:  # the dispatcher retries inside; this only guards the thread itself
                log.exception("%s outbox dispatcher stopped", name)

        try:
            dispatchers = service_dispatchers(self.settings)
        except Exception:  # a CRM not reachable at start-up must not keep the scoring API down
            log.exception("outbox dispatchers not started")
            return
        for name, dispatcher in dispatchers:
            threading.Thread(
                target=run, args=(name, dispatcher), name=f"{name}-dispatcher", daemon=True
            ).start()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        gc.unfreeze()  # let the interpreter tear the loaded objects down normally at exit

    async def __is_ready__(self) -> bool:
        # Loading happens on the reload thread only: readiness never waits for it. Async, so BentoML
        # answers it on the event loop instead of handing it to a thread (a hop that waits for the
        # interpreter lock behind scoring under load).
        return self.reloader.current is not None

    # -- endpoints ----------------------------------------------------------------------------------
    def _run(
        self, customer_ids: list[str], *, write_back: bool, only: str | None, explain: bool | None
    ) -> Any:
        model_set = self.reloader.current  # read once: the whole answer comes from this one set
        if model_set is None:
            return _unavailable("not_ready", self.load_error or "loading")
        try:
            payload = model_set.value.score(
                customer_ids, write_back=write_back, now=datetime.now(UTC), only=only, explain=explain
            )
        except FeatureStoreError as exc:
            return _unavailable("feature_store_unavailable", str(exc))
        except OperationalError as exc:  # the state DB (tag store + outbox) is locked or unreachable
            log.warning("state database unavailable: %s", exc.orig)
            return _unavailable("state_store_unavailable", "the tag store / outbox database is unavailable")
        payload["model_set"] = model_set.id
        self.metrics.answered(only or "score", payload)
        # The payload is built field for field as `ScoreResponse` (tests/service compare the two), so it
        # is encoded directly: validating 1,000 nested items again took longer than scoring them.
        return Response(
            response_json(payload),
            media_type="application/json",
            headers={MODEL_SET_HEADER: model_set.id},
        )

    @bentoml.api(route="/v1/score")
    def score(
        self,
        customer_ids: CustomerIds,
        write_back: WriteBack = False,
        explain: Explain = None,  # type: ignore[assignment]  # left out: decided by the request's size
    ) -> ScoreResponse:
        """Score 1 to 1,000 customers: segment, churn, conversion, tags; optionally queue tag changes.
        `explain`: reasons per score (default: true up to 100 ids, false above)."""
        return self._run(customer_ids, write_back=write_back, only=None, explain=explain)

    @bentoml.api(route="/v1/churn")
    def churn(
        self,
        customer_ids: CustomerIds,
        explain: Explain = None,  # type: ignore[assignment]  # left out: decided by the request's size
    ) -> ScoreResponse:
        """Churn probability, tier and reasons only (no tags, no write-back)."""
        return self._run(customer_ids, write_back=False, only="churn", explain=explain)


class _BenchmarkEndpoints:
    """Endpoints for bench/bench_serving.py only (`serving.benchmark_endpoint: true`)."""

    @bentoml.api(route="/v1/noop")
    def noop(
        self, customer_ids: Annotated[list[str], Field(min_length=1, max_length=1000)]
    ) -> dict[str, int]:
        """Does nothing: the latency floor BentoML itself sets, for benchmarks."""
        return {"n": len(customer_ids)}


def _service_options(settings: Settings) -> dict[str, Any]:
    return {
        "name": "persona",
        "workers": settings.serving.workers,
        "traffic": {
            "timeout": settings.serving.timeout_seconds,
            "max_concurrency": settings.serving.max_concurrency,
        },
    }


def _service_class(settings: Settings) -> type:
    """The service class: with the benchmark endpoint only when the configuration asks for it."""
    if not settings.serving.benchmark_endpoint:
        return _PersonaService
    return type("_PersonaService", (_BenchmarkEndpoints, _PersonaService), {})


# BentoML reads the service options when this module is imported (that is how `bentoml serve` works),
# so the entry point loads the settings here, once.
_SETTINGS = load_settings()
PersonaService = bentoml.service(**_service_options(_SETTINGS))(_service_class(_SETTINGS))
PersonaService = bentoml.asgi_app(make_app(lambda: _SETTINGS), path="/v1/campaigns")(PersonaService)
PersonaService.add_asgi_middleware(ApiKeyMiddleware)
PersonaService.add_asgi_middleware(OpenApiMiddleware)
PersonaService.add_asgi_middleware(ReadinessMiddleware)
# The business dashboard (overview, model health, customer 360) at /dashboard; it checks access itself.
DASHBOARD = Dashboard(lambda: _SETTINGS, digests=load_api_keys)
PersonaService.mount_asgi_app(DASHBOARD, path="/dashboard", name="dashboard")
# after the key check: content type, body size (413 before parsing), 4xx bodies and their log lines
PersonaService.add_asgi_middleware(RequestGuard, max_body_bytes=_SETTINGS.serving.max_body_bytes)
# after the guard: admission by cost (customers in flight per worker), 429 + Retry-After at once
PersonaService.add_asgi_middleware(
    AdmissionMiddleware,
    max_inflight_customers=_SETTINGS.serving.max_inflight_customers,
    # resolved at the first refusal, inside the worker (the metrics exist only there: serving/metrics.py)
    on_refused=lambda path: ServiceMetrics.shared().refused(path),
)

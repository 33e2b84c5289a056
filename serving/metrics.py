"""Persona's Prometheus metrics, served at `/metrics` beside BentoML's own (request counts, latency).

BentoML runs several worker processes and merges their metrics through prometheus_client's multiprocess
mode, which it switches on in each worker after importing the service module: the metrics are therefore
created when the service is constructed in its worker (`ServiceMetrics()`), never at import time.
Counters add up over workers; the outbox gauges show the most recent reading of any live worker (they
count rows of the shared outbox tables, one series per `outbox`: `crm` tag changes, `triggers` actions,
`segments` list memberships, the names of `serving.dispatcher.service_dispatchers`); the model-version
info gauge is 1 per version served (0 once a hot reload replaced it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# Probability buckets: fine at the low end, where most churn and conversion scores sit.
PROBABILITY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
ITEM_STATUSES = ("ok", "not_found", "consent_withdrawn")


class ServiceMetrics:
    """The metrics one service worker updates."""

    _shared: ServiceMetrics | None = None

    @classmethod
    def shared(cls) -> ServiceMetrics:
        """The process's instance: a metric name registers once per process (prometheus_client's
        registry is global), however many times the service is constructed."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self, registry: Any = None) -> None:
        # Imported here, not at module level: prometheus_client picks single- or multi-process storage
        # when it is first imported, and BentoML sets PROMETHEUS_MULTIPROC_DIR only after importing
        # the service module (see bentoml/metrics.py).
        import prometheus_client as prom

        kw = {} if registry is None else {"registry": registry}
        self.items = prom.Counter(
            "persona_score_items",
            "Customers answered, by endpoint and status (ok, not_found, consent_withdrawn).",
            ["endpoint", "status"],
            **kw,
        )
        self.degraded = prom.Counter(
            "persona_score_degraded_items",
            "Customers scored with stale or missing feature views (degraded: true).",
            ["endpoint"],
            **kw,
        )
        self.probability = prom.Histogram(
            "persona_model_probability",
            "Probabilities answered, per model (churn, conversion): watch for drift.",
            ["model"],
            buckets=PROBABILITY_BUCKETS,
            **kw,
        )
        self.model_info = prom.Gauge(
            "persona_model_info",
            "1 for each model version served: model, registry version, FeatureService it was trained on.",
            ["model", "version", "feature_service"],
            multiprocess_mode="livemax",
            **kw,
        )
        # one gauge per status, labelled by outbox (crm, triggers, segments): each outbox the service's
        # dispatchers deliver reports its own series
        self.outbox_pending = prom.Gauge(
            "persona_outbox_pending",
            "Entries queued, not yet delivered, per outbox (crm tag changes, triggers, segments).",
            ["outbox"],
            multiprocess_mode="livemostrecent",
            **kw,
        )
        self.outbox_dead = prom.Gauge(
            "persona_outbox_dead_letters",
            "Entries rejected for good or out of attempts, per outbox "
            "(persona crm replay [--triggers | --segments]).",
            ["outbox"],
            multiprocess_mode="livemostrecent",
            **kw,
        )
        self.outbox_unmatched = prom.Gauge(
            "persona_outbox_unmatched",
            "Entries parked for customers without a CRM record key yet (released when one appears), "
            "per outbox.",
            ["outbox"],
            multiprocess_mode="livemostrecent",
            **kw,
        )
        self.admission_refused = prom.Counter(
            "persona_admission_refused",
            "Scoring requests refused with 429 + Retry-After by admission (customers in flight at the "
            "bound serving.max_inflight_customers), by endpoint.",
            ["endpoint"],
            **kw,
        )
        self.delivered = prom.Counter(
            "persona_crm_delivered", "Tag changes delivered to the CRM by the service's dispatcher.", **kw
        )
        self.retried = prom.Counter(
            "persona_crm_retried", "Tag changes sent back to the queue after a transient CRM failure.", **kw
        )
        self.dead_lettered = prom.Counter(
            "persona_crm_dead_lettered", "Tag changes dead-lettered by the service's dispatcher.", **kw
        )
        # (metric, label values) -> the labelled child: `labels()` checks and joins its arguments on every
        # call, several times the cost of the increment itself on a one-customer request
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def models_served(self, models: Mapping[str, Any], *, previous: Mapping[str, Any] | None = None) -> None:
        """Record the versions loaded: `models` maps kind -> artifacts.registry.LoadedModel. After a hot
        reload, the versions of the `previous` set that are no longer served drop to 0."""
        now = {(kind, m.version, m.feature_service) for kind, m in models.items()}
        for kind, loaded in (previous or {}).items():
            labels = (kind, loaded.version, loaded.feature_service)
            if labels not in now:
                self.model_info.labels(*labels).set(0)
        for labels in now:
            self.model_info.labels(*labels).set(1)

    def refused(self, path: str) -> None:
        """Count one admission refusal (429) of the scoring route `path` (/v1/score -> score)."""
        self._child(self.admission_refused, path.rsplit("/", 1)[-1]).inc()

    def answered(self, endpoint: str, payload: Mapping[str, Any]) -> None:
        """Count a `ScoreResponse` payload's items and observe its probabilities."""
        for status in ITEM_STATUSES:
            count = payload["scored" if status == "ok" else status]
            if count:
                self._child(self.items, endpoint, status).inc(count)
        items = payload["items"]
        for model in ("churn", "conversion"):
            values = [
                item[model]["probability"]
                for item in items
                if item.get(model) and item[model]["probability"] is not None
            ]
            if values:
                self._observe_many(self._child(self.probability, model), values)
        degraded = sum(1 for item in items if item["degraded"])
        if degraded:
            self._child(self.degraded, endpoint).inc(degraded)

    @staticmethod
    def _observe_many(histogram: Any, values: Sequence[float] | np.ndarray) -> None:
        """`histogram.observe` for many values at once: one write per bucket instead of one per value
        (a 1,000-customer answer would otherwise cost 2,000 locked writes to the multiprocess files)."""
        if len(values) < 8:
            for v in values:
                histogram.observe(float(v))
            return
        values = np.asarray(values, dtype=float)
        upper = np.asarray(histogram._upper_bounds)  # the bounds prometheus_client keeps, +Inf last
        counts = np.bincount(np.searchsorted(upper, values, side="left"), minlength=len(upper))
        for bucket, count in zip(histogram._buckets, counts, strict=True):
            if count:
                bucket.inc(int(count))
        histogram._sum.inc(float(values.sum()))

    def dispatched(self, stats: Any, counts: Mapping[str, int] | None, *, outbox: str) -> None:
        """After a round of `outbox`'s dispatcher: its DispatchStats and, when read, the outbox's counts
        by status. The delivery counters (`persona_crm_*`) are the CRM tags' only."""
        if outbox == "crm":
            if stats.delivered:
                self.delivered.inc(stats.delivered)
            if stats.retried:
                self.retried.inc(stats.retried)
            if stats.dead:
                self.dead_lettered.inc(stats.dead)
        if counts is not None:
            self.outbox_pending.labels(outbox).set(counts.get("pending", 0))
            self.outbox_dead.labels(outbox).set(counts.get("dead", 0))
            self.outbox_unmatched.labels(outbox).set(counts.get("unmatched", 0))

    def observer(self, outbox: str) -> Callable[[Any, Mapping[str, int] | None], None]:
        """The `observe` callback of `outbox`'s dispatcher loop (`Dispatcher.run_forever`)."""
        return functools.partial(self.dispatched, outbox=outbox)

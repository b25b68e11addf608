"""The service's Prometheus metrics: HTTP requests and latency (recorded by
prometheus-fastapi-instrumentator's middleware), model time, decisions, prediction-log errors
and the served model."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info
from starlette.routing import BaseRoute, Match

from triage import novelty

#: what the prediction log can fail at (each counted from 0, so that an alert has a series)
LOG_OPERATIONS = ("append", "purge")

# seconds; dense where the latency targets are (15-40 ms)
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "triage_http_requests", "HTTP requests", ["method", "path", "status"], registry=r
        )
        self.latency = Histogram(
            "triage_http_request_duration_seconds",
            "Request latency, receipt to last byte",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "triage_inference_seconds",
            "Model time per model call (tokenise, onnxruntime, routing)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "triage_decisions",
            "Classified messages by top intent, decision and action",
            ["intent", "decision", "action"],
            registry=r,
        )
        self.novelty = Histogram(
            "triage_message_novelty",
            "Each message's distance to the training data (triage.novelty)",
            buckets=novelty.EDGES[1:],
            registry=r,
        )
        self.far_out = Counter(
            "triage_far_out_messages",
            "Messages sent to review because they are far from the training data",
            registry=r,
        )
        self.log_errors = Counter(
            "triage_prediction_log_errors",
            "Prediction-log operations that failed",
            ["operation"],
            registry=r,
        )
        for operation in LOG_OPERATIONS:
            self.log_errors.labels(operation)
        self.queued = Gauge(
            "triage_queued_messages",
            "Messages accepted and not yet classified (bounded by serve.fairness)",
            registry=r,
        )
        self.automation = Gauge(
            "triage_automation_enabled",
            "1 while automatic decisions are allowed, 0 while the kill switch is on",
            registry=r,
        )
        self.shadow = Counter(
            "triage_shadow_messages",
            "Messages the model that did not decide was to score: scored, dropped (its queue "
            "was full), failed",
            ["outcome"],
            registry=r,
        )
        for outcome in ("scored", "dropped", "failed"):
            self.shadow.labels(outcome)
        self.challenger = Gauge(
            "triage_challenger_info", "The loaded challenger model", ["model_version"], registry=r
        )
        self.ready = Gauge("triage_model_ready", "1 once the bundle is loaded", registry=r)
        self.model = Gauge("triage_model_info", "The served model", ["model_version"], registry=r)
        self.routes: list[BaseRoute] = []

    def observe_request(self, info: Info) -> None:
        """Count and time one request (an instrumentation for the instrumentator)."""
        scope = info.request.scope
        route = scope.get("route") or _matching_route(self.routes, scope)
        path = getattr(route, "path", "other")  # the template: bounded label values
        self.requests.labels(info.method, path, info.modified_status).inc()
        self.latency.labels(path).observe(info.modified_duration)

    def instrument(self, app: FastAPI) -> None:
        """Count and time every request to ``app``, whatever its status (the outermost
        middleware: add it after the others)."""
        self.routes = app.routes  # to name the route of a request refused before routing (413)
        Instrumentator(should_group_status_codes=False, registry=self.registry).add(
            self.observe_request
        ).instrument(app)


def _matching_route(routes: list[BaseRoute], scope: dict) -> BaseRoute | None:
    """The route whose path matches a request that never reached the router; None: no route."""
    for route in routes:
        if route.matches(scope)[0] is not Match.NONE:
            return route
    return None

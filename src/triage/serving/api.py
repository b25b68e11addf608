"""``triage serve``: the HTTP service in front of the runtime (FastAPI under uvicorn).

Reads the bundle ``serve.bundle`` (written by ``triage export``); writes one prediction-log record
per classified message to ``serve.prediction_log.path`` (SQLite, :mod:`triage.serving.predlog`).

Endpoints (the OpenAPI schema is served at ``/openapi.json``, docs at ``/docs``):

    POST /v1/classify   {"messages": [{"text": ..., "id"?, "lang"?, "channel"?}, ...]} -> one
                        prediction per message (intent, sentiment, probabilities, decision,
                        action, priority, reason, lang, model_version, message_id)
    GET  /healthz       200 while the process is up
    GET  /readyz        200 once the bundle is loaded; 503 while loading or after a failed load
    GET  /v1/model      the bundle's metadata: version, labels, thresholds, routing, limits
    GET  /metrics       Prometheus: requests, latency histogram, decisions per class, log errors

Input errors get a 4xx with a one-line ``detail`` naming the field and the limit (and ``errors``,
one entry per problem), never a 500: 422 for a body that does not validate (empty or
whitespace-only text, too long, too many messages, wrong types, unknown or missing fields, not
JSON), 415 for a body that is not ``application/json``, 413 for a body larger than the limits
allow, 503 while the model is not loaded.

The bundle is loaded in a background thread at start-up so that ``/healthz`` answers at once and
``/readyz`` tells when the service can take traffic. Inference runs in a worker thread (one model
call at a time: onnxruntime already spreads one call over all physical cores, and two calls at
once on a 2-core machine only contend).

**The prediction log.** Every served prediction is appended (``serve.prediction_log.enabled``),
text masked with :func:`triage.text.mask_pii` when ``serve.pii_mask`` is on; records older than
``retention_days`` are purged at start-up and once a day. If the log cannot be written the
request **still succeeds** (the prediction is valid and the inbox needs it; taking the service down
with the disk would stop every inbox), but never silently: the error is logged, counted in
``triage_prediction_log_errors_total`` (alert on it) and the response carries the header
``X-Prediction-Log: failed``. A log that cannot be opened at start-up stops the service.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from omegaconf import DictConfig
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from triage.serving.predlog import PredictionLog
from triage.serving.record import Prediction
from triage.serving.runtime import Runtime, read_manifest
from triage.text import clean_text, mask_pii

log = logging.getLogger(__name__)

PURGE_EVERY_S = 24 * 3600
# seconds; dense where the latency targets are (15-40 ms)
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5)


# --------------------------------------------------------------------------------------------
# The API's shapes (the OpenAPI schema is generated from these)


class ErrorItem(BaseModel):
    loc: str = Field(description="Where in the body, e.g. messages[2].text")
    msg: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong and what to do, in one line")
    errors: list[ErrorItem] = Field(default_factory=list)


class PredictionOut(BaseModel):
    """The runtime's prediction for one message, with the message id it was logged under."""

    message_id: str = Field(description="The caller's id, or a generated one (uuid4 hex)")
    intent: str
    intent_prob: float
    intent_probs: dict[str, float]
    intent_threshold: float | None = Field(description="Threshold of the top intent; null: never")
    sentiment: str | None
    sentiment_prob: float | None
    sentiment_probs: dict[str, float] | None
    sentiment_threshold: float | None
    decision: str = Field(description="auto: acted on without a person; review: a person decides")
    action: str = Field(
        description="auto_reply, sales_queue, support_queue, care_queue, hide, "
        "moderation_review, review or none"
    )
    priority: str = Field(description="low, normal, high or urgent")
    reason: str = Field(description="Why, in one sentence")
    lang: str = Field(description="The language given or detected; und: undetermined")
    model_version: str


class ClassifyResponse(BaseModel):
    model_version: str
    predictions: list[PredictionOut]


class ModelInfo(BaseModel):
    """The bundle's manifest (without file hashes), its routing table and the input limits."""

    model_config = ConfigDict(extra="allow")
    model_version: str
    languages: list[str]
    heads: dict[str, Any]
    routing: dict[str, Any]
    limits: dict[str, int]


class Status(BaseModel):
    status: str
    model_version: str | None = None


def request_models(max_batch: int, max_text_chars: int) -> type[BaseModel]:
    """The request body model with the configured limits (so that the schema shows them)."""

    class Message(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: StrictStr = Field(
            min_length=1, max_length=max_text_chars, description="The message as sent"
        )
        id: StrictStr | None = Field(
            None, min_length=1, max_length=200, description="Your id for the message (logged)"
        )
        lang: StrictStr | None = Field(
            None,
            pattern=r"^[A-Za-z]{2,3}$",
            description="ISO 639-1 code; omitted: detected among the model's languages",
        )
        channel: StrictStr | None = Field(
            None, max_length=64, description="Where it came from (instagram, x, ...); logged"
        )

        @field_validator("text")
        @classmethod
        def not_blank(cls, text: str) -> str:
            if not clean_text(text):  # what the model would see: nothing
                raise ValueError("text is only whitespace or invisible characters")
            return text

    class ClassifyRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        messages: list[Message] = Field(
            min_length=1,
            max_length=max_batch,
            description=f"1 to {max_batch} messages",
        )

    return ClassifyRequest


# --------------------------------------------------------------------------------------------
# Metrics


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
            "Model time per request (tokenise, onnxruntime, routing)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "triage_decisions",
            "Classified messages by top intent, decision and action",
            ["intent", "decision", "action"],
            registry=r,
        )
        self.log_errors = Counter(
            "triage_prediction_log_errors",
            "Prediction-log operations that failed",
            ["operation"],
            registry=r,
        )
        self.ready = Gauge("triage_model_ready", "1 once the bundle is loaded", registry=r)
        self.model = Gauge("triage_model_info", "The served model", ["model_version"], registry=r)


class MetricsMiddleware:
    """Counts and times every request, and refuses oversized bodies with 413 (pure ASGI)."""

    def __init__(self, app: Any, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        too_large = length.isdigit() and int(length) > self.max_body_bytes
        if not too_large and b"transfer-encoding" in headers:
            # a chunked upload states no length: read it here, up to the limit
            receive, too_large = await self._read_capped(receive)
        if too_large:
            response = JSONResponse(
                {
                    "detail": f"body over the limit of {self.max_body_bytes} bytes; send "
                    "fewer or shorter messages per request",
                    "errors": [],
                },
                status_code=413,
            )
            await response(scope, receive, send_and_record)
        else:
            await self.app(scope, receive, send_and_record)
        route = scope.get("route")
        path = getattr(route, "path", "other")  # the template: bounded label values
        self.metrics.requests.labels(scope["method"], path, str(status["code"])).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - start)

    async def _read_capped(self, receive: Callable) -> tuple[Callable, bool]:
        """Read a body of unstated length; return a ``receive`` that replays it, and whether
        it went over ``max_body_bytes`` (reading stops there)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return receive, True
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return replay.pop() if replay else await receive()

        return replayed, False


# --------------------------------------------------------------------------------------------
# The service


class Service:
    """The loaded model, the prediction log and the metrics behind one app."""

    def __init__(self, scfg: Any, load: Callable[[], Runtime]) -> None:
        self.cfg = scfg
        self._load = load
        self.runtime: Runtime | None = None
        self.load_error: str | None = None
        self.metrics = Metrics()
        self.predlog: PredictionLog | None = None
        # one model call at a time (see the module docstring)
        self.model_slot = anyio.CapacityLimiter(1)

    def load_in_background(self) -> threading.Thread:
        def target() -> None:
            started = time.perf_counter()
            try:
                runtime = self._load()
            except Exception as exc:  # reported by /readyz and the log; the process stays up
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("the model bundle failed to load: %s", self.load_error)
                return
            self.runtime = runtime
            self.metrics.ready.set(1)
            self.metrics.model.labels(runtime.model_version).set(1)
            log.info(
                "model %s ready in %.2f s", runtime.model_version, time.perf_counter() - started
            )

        thread = threading.Thread(target=target, name="load-bundle", daemon=True)
        thread.start()
        return thread

    def open_log(self) -> None:
        pcfg = self.cfg.prediction_log
        if not pcfg.enabled:
            log.info("prediction log off (serve.prediction_log.enabled=false)")
            return
        try:
            self.predlog = PredictionLog(pcfg.path, pcfg.retention_days)
        except Exception as exc:
            raise RuntimeError(
                f"cannot open the prediction log {pcfg.path}: {exc}; fix "
                "serve.prediction_log.path or set serve.prediction_log.enabled=false"
            ) from exc
        log.info("prediction log %s (retention %s days)", pcfg.path, pcfg.retention_days)

    def purge(self) -> None:
        if self.predlog is None:
            return
        try:
            deleted = self.predlog.purge()
        except Exception:
            self.metrics.log_errors.labels("purge").inc()
            log.exception("prediction log: purge failed")
            return
        log.info("prediction log: purged %d record(s) past retention", deleted)

    def records(
        self, messages: list[Any], predictions: list[Prediction], ids: list[str]
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC).isoformat()
        masked = bool(self.cfg.pii_mask)
        return [
            {
                **prediction.to_dict(),
                "message_id": message_id,
                "created_at": now,
                "text": mask_pii(message.text) if masked else message.text,
                "text_masked": masked,
                "channel": message.channel,
            }
            for message, prediction, message_id in zip(messages, predictions, ids, strict=True)
        ]

    def append(self, records: list[dict[str, Any]]) -> bool:
        """Append to the prediction log; False (logged and counted) when that failed."""
        if self.predlog is None:
            return True
        try:
            self.predlog.append(records)
        except Exception:
            self.metrics.log_errors.labels("append").inc()
            log.exception("prediction log: could not append %d record(s)", len(records))
            return False
        return True

    def classify(self, messages: list[Any]) -> list[Prediction]:
        assert self.runtime is not None
        started = time.perf_counter()
        predictions = self.runtime.classify(
            [m.text for m in messages], [m.lang for m in messages], self.cfg.batch_size
        )
        self.metrics.inference.observe(time.perf_counter() - started)
        for p in predictions:
            self.metrics.decisions.labels(p.intent, p.decision, p.action).inc()
        return predictions


def _loc(parts: tuple | list) -> str:
    """``("body", "messages", 2, "text")`` -> ``messages[2].text``."""
    out = ""
    for part in parts[1:] if parts and parts[0] == "body" else parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _error(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status)


def create_app(scfg: Any, load: Callable[[], Runtime] | None = None) -> FastAPI:
    """The FastAPI app for a ``serve`` config node.

    Args:
        scfg: the ``serve`` config (``cfg.serve``).
        load: how to load the runtime (tests inject one); default: the configured bundle.
    """
    if load is None:

        def load() -> Runtime:
            return Runtime.load(scfg.bundle, threads=scfg.threads, verify=scfg.verify_bundle)

    service = Service(scfg, load)
    ClassifyRequest = request_models(scfg.max_batch, scfg.max_text_chars)
    # a request at the limits, JSON-escaped at worst (\uXXXX: 6 bytes per character)
    max_body_bytes = scfg.max_batch * (scfg.max_text_chars * 6 + 1024) + 4096

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.open_log()
        service.load_in_background()

        async def purge_daily() -> None:
            while True:
                await anyio.to_thread.run_sync(service.purge)
                await asyncio.sleep(PURGE_EVERY_S)

        purger = asyncio.create_task(purge_daily())
        try:
            yield
        finally:
            purger.cancel()
            if service.predlog is not None:
                service.predlog.close()

    app = FastAPI(
        title="social-triage",
        summary="Intent and sentiment triage of social-media customer messages",
        version=_package_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, max_body_bytes=max_body_bytes)
    errors_4xx: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": what}
        for code, what in (
            (413, "Body too large"),
            (415, "Body is not JSON"),
            (422, "Invalid request: the detail names the field"),
            (503, "The model is not loaded (yet)"),
        )
    }

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        body_level = all(tuple(e.get("loc", ()))[:1] == ("body",) for e in exc.errors())
        if body_level and "json" not in content_type and await request.body():
            return _error(
                415,
                f"send the body as JSON with Content-Type: application/json, not "
                f"{content_type or 'no content type'}",
            )
        errors = []
        for e in exc.errors():
            loc, msg = _loc(tuple(e.get("loc", ()))), e.get("msg", "invalid")
            if e.get("type") == "json_invalid":
                loc, msg = "body", f"not valid JSON ({e.get('ctx', {}).get('error', msg)})"
            elif loc == "body" and e.get("type") in ("missing", "model_attributes_type"):
                msg = 'expected a JSON object like {"messages": [{"text": "..."}]}'
            elif msg.startswith("Value error, "):
                msg = msg.removeprefix("Value error, ")
            errors.append({"loc": loc, "msg": msg})
        shown = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return _error(422, f"invalid request: {shown}{more}", errors)

    def not_ready() -> JSONResponse:
        if service.load_error:
            return _error(503, f"the model bundle failed to load: {service.load_error}")
        return _error(503, "the model bundle is still loading; retry in a few seconds")

    @app.get("/healthz", response_model=Status, tags=["ops"])
    async def healthz() -> Status:
        """The process is up (says nothing about the model: see /readyz)."""
        return Status(status="ok")

    @app.get(
        "/readyz",
        response_model=Status,
        responses={503: errors_4xx[503]},
        tags=["ops"],
    )
    async def readyz() -> Any:
        """200 once the bundle is loaded and the service can classify; 503 before."""
        if service.runtime is None:
            return not_ready()
        return Status(status="ready", model_version=service.runtime.model_version)

    @app.get("/v1/model", response_model=ModelInfo, responses={503: errors_4xx[503]})
    async def model_info() -> Any:
        """The served model: version, languages, labels, thresholds, routing table, limits."""
        if service.runtime is None:
            return not_ready()
        return {
            **service.runtime.metadata(),
            "limits": {"max_batch": scfg.max_batch, "max_text_chars": scfg.max_text_chars},
        }

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses={k: v for k, v in errors_4xx.items()},
    )
    async def classify(body: ClassifyRequest, response: Response) -> Any:
        """Classify and route one or more messages (one message: a list of one)."""
        if service.runtime is None:
            return not_ready()
        messages = body.messages
        predictions = await anyio.to_thread.run_sync(
            service.classify, messages, limiter=service.model_slot
        )
        ids = [m.id or uuid.uuid4().hex for m in messages]
        if service.predlog is not None:
            records = service.records(messages, predictions, ids)
            if not await anyio.to_thread.run_sync(service.append, records):
                response.headers["X-Prediction-Log"] = "failed"
        return {
            "model_version": service.runtime.model_version,
            "predictions": [
                {"message_id": i, **p.to_dict()} for i, p in zip(ids, predictions, strict=True)
            ],
        }

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("social-triage")
    except PackageNotFoundError:
        return "0+unknown"


def run(cfg: DictConfig) -> None:
    """``triage serve``: serve ``cfg.serve.bundle`` with uvicorn in the foreground."""
    import uvicorn

    scfg = cfg.serve
    manifest = read_manifest(scfg.bundle)  # a missing bundle fails here, before listening
    log.info(
        "serving %s (model %s) on http://%s:%d",
        scfg.bundle,
        manifest["model_version"],
        scfg.host,
        scfg.port,
    )
    uvicorn.run(create_app(scfg), host=scfg.host, port=scfg.port, log_level=scfg.log_level)

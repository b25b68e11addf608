"""``triage serve``: the HTTP service in front of the runtime (FastAPI under uvicorn).

Reads the bundle ``serve.bundle`` (written by ``triage export``); writes one prediction-log record
per classified message to ``serve.prediction_log.path`` (SQLite, :mod:`triage.serving.predlog`).

Endpoints (the OpenAPI schema is served at ``/openapi.json``, docs at ``/docs`` and ``/redoc``,
their scripts served locally by fastapi-offline, so they work without internet):

    POST /v1/classify   {"messages": [{"text": ..., "id"?, "lang"?, "channel"?}, ...]} -> one
                        prediction per message (intent, sentiment, probabilities, decision,
                        action, priority, reason, lang, model_version, message_id)
    GET  /healthz       200 while the process is up
    GET  /readyz        200 once the bundle and the rollout state are loaded; 503 before, or
                        after either failed to load (the reason in ``detail``)
    GET  /v1/model      the bundle's metadata: version, labels, thresholds, routing, limits
    GET  /metrics       Prometheus: requests, latency histogram, decisions per class, log errors

Input errors get a 4xx with a one-line ``detail`` naming the field and the limit (and ``errors``,
one entry per problem), never a 500: 422 for a body that does not validate (empty or
whitespace-only text, too long, too many messages, wrong types, unknown or missing fields, not
JSON, a ``lang`` the model does not have), 400 for a body that is not UTF-8, 415 for a body that is
not ``application/json``, 413 for a body larger than the limits allow, 408 for a body that arrives
too slowly, 429 and 503 (with ``Retry-After``) beyond the fairness bounds, 503 while the model is
not loaded.

The bundle is loaded in a background thread at start-up so that ``/healthz`` answers at once and
``/readyz`` tells when the service can take traffic. Inference runs in a worker thread, one model
call at a time (onnxruntime already spreads one call over all physical cores, and two calls at
once on a 2-core machine only contend), scheduled fairly by :mod:`~triage.serving.scheduler`:
requests are cut into chunks of ``serve.fairness.chunk_tokens`` and the waiting client addresses
served in turn; a client with too many requests in progress gets 429, a full queue 503, both
with ``Retry-After``. Connections that idle, send their head too slowly or their body too slowly
are closed or get 408 (``serve.timeouts``).

**The prediction log.** Every served prediction is appended (``serve.prediction_log.enabled``),
text masked with :func:`triage.text.mask_pii` when ``serve.pii_mask`` is on; records older than
``retention_days`` are purged at start-up and once a day. If the log cannot be written the
request **still succeeds** (the prediction is valid and the inbox needs it; taking the service down
with the disk would stop every inbox), but never silently: the error is logged, counted in
``triage_prediction_log_errors_total`` (alert on it) and the response carries the header
``X-Prediction-Log: failed``. A log that cannot be opened at start-up stops the service.

The parts: :mod:`~triage.serving.api_models` (request and response shapes, the limits),
:mod:`~triage.serving.limits` (413, 408, the head timeout), :mod:`~triage.serving.scheduler`
(fair model calls), :mod:`~triage.serving.metrics` (Prometheus) and
:mod:`~triage.serving.service` (runtime, prediction log and metrics behind the app).
"""

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from triage.config import Config, to_container
from triage.serving.api_models import (
    ClassifyResponse,
    ErrorResponse,
    ModelInfo,
    RolloutIn,
    RolloutOut,
    Status,
    max_body_bytes,
    request_models,
)
from triage.serving.bundle import read_manifest
from triage.serving.limits import BodyLimitMiddleware, HeadTimeoutProtocol
from triage.serving.rollout import RolloutState
from triage.serving.runtime import Runtime
from triage.serving.scheduler import Busy
from triage.serving.service import Service
from triage.text import UNDETERMINED

log = logging.getLogger(__name__)

PURGE_EVERY_S = 24 * 3600
#: FastAPI's 400 for a JSON body it cannot decode (in practice: not UTF-8)
_BODY_PARSE_ERROR = "There was an error parsing the body"


def _loc(parts: tuple | list) -> str:
    """``("body", "messages", 2, "text")`` -> ``messages[2].text``."""
    out = ""
    for part in parts[1:] if parts and parts[0] == "body" else parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _error(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status)


def _invalid(errors: list[dict[str, str]], hint: str = "") -> JSONResponse:
    """422 naming the first problems (``errors`` lists them all)."""
    shown = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return _error(422, f"invalid request: {shown}{more}{hint}", errors)


def _unknown_langs(messages: list[Any], allowed: list[str]) -> list[dict[str, str]]:
    """One error per message whose ``lang`` is not among ``allowed`` (compared in lower case)."""
    return [
        {"loc": f"messages[{i}].lang", "msg": f"{m.lang!r} is not one of {', '.join(allowed)}"}
        for i, m in enumerate(messages)
        if m.lang is not None and m.lang.strip().lower() not in allowed
    ]


def create_app(scfg: Any, load: Callable[[], Runtime] | None = None) -> FastAPI:
    """The FastAPI app for a ``serve`` config (:class:`triage.config.ServeConfig`).

    Args:
        scfg: the ``serve`` config (``cfg.serve``).
        load: how to load the runtime (tests inject one); default: the configured bundle.
    """
    if load is None:

        def load() -> Runtime:
            return Runtime.load(scfg.bundle, threads=scfg.threads, verify=scfg.verify_bundle)

    service = Service(scfg, load)
    ClassifyRequest = request_models(scfg.max_batch, scfg.max_text_chars)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.open_log()
        service.load_in_background()

        async def purge_daily() -> None:
            while True:
                await anyio.to_thread.run_sync(service.purge)
                await asyncio.sleep(PURGE_EVERY_S)

        async def watch_rollout() -> None:  # an operator's change reaches every worker
            while True:
                if service.rollout is not None:
                    service.rollout.refresh()
                await asyncio.sleep(scfg.rollout.poll_seconds)

        purger = asyncio.create_task(purge_daily())
        watcher = asyncio.create_task(watch_rollout())
        try:
            yield
        finally:
            purger.cancel()
            watcher.cancel()
            if service.predlog is not None:
                service.predlog.close()

    # /docs and /redoc from the assets fastapi-offline ships: no CDN, so they work offline
    app = FastAPIOffline(
        title="social-triage",
        summary="Intent and sentiment triage of social-media customer messages",
        version=_package_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=max_body_bytes(scfg.max_batch, scfg.max_text_chars),
        timeout_s=scfg.timeouts.request_body,
    )
    service.metrics.instrument(app)  # outermost: counts the 413s too
    errors_4xx: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": what}
        for code, what in (
            (400, "Body is not UTF-8"),
            (413, "Body too large"),
            (415, "Body is not JSON"),
            (422, "Invalid request: the detail names the field"),
            (429, "This client has too many requests in progress (see Retry-After)"),
            (503, "The model is not loaded (yet), or the service is at its queue limit"),
        )
    }

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """FastAPI's own errors (400, 404, 405) in the shape of the others."""
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        detail, errors = str(exc.detail), []
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
            msg = "not UTF-8; send the JSON body encoded as UTF-8"
            detail, errors = f"invalid request: body: {msg}", [{"loc": "body", "msg": msg}]
        response = _error(exc.status_code, detail, errors)
        response.headers.update(exc.headers or {})
        return response

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
        return _invalid(errors)

    def not_ready() -> JSONResponse:
        if service.load_error:
            return _error(
                503, f"the model bundle or the rollout state failed to load: {service.load_error}"
            )
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
            "rollout": service.rollout.state.to_dict() if service.rollout else None,
            "challenger": {
                "model_version": service.challenger.model_version if service.challenger else None,
                "error": service.challenger_error,
                "canary_share": scfg.canary_share if service.challenger else 0.0,
            },
        }

    def admin(authorization: str | None) -> JSONResponse | None:
        """None when the bearer token is right; else the refusal (the token is never logged)."""
        token = scfg.rollout.admin_token
        if not token:
            return _error(403, "the admin endpoint is off: set TRIAGE_ADMIN_TOKEN and restart")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8")
        ):
            return _error(401, "send Authorization: Bearer <the admin token>")
        return None

    admin_responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": "No or a wrong admin token"},
        403: {"model": ErrorResponse, "description": "The admin endpoint is off"},
        422: errors_4xx[422],
        503: errors_4xx[503],
    }

    @app.get("/v1/admin/rollout", response_model=RolloutOut, responses=admin_responses)
    async def get_rollout(authorization: Annotated[str | None, Header()] = None) -> Any:
        """The kill switch and the pilot list in force."""
        if refused := admin(authorization):
            return refused
        if service.rollout is None:
            return not_ready()
        return service.rollout.state.to_dict()

    @app.post("/v1/admin/rollout", response_model=RolloutOut, responses=admin_responses)
    async def set_rollout(
        body: RolloutIn, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        """Switch automation off or on, or change the pilot list, for every worker (from its
        next model call on); fields left out keep their value."""
        if refused := admin(authorization):
            return refused
        if service.rollout is None or service.runtime is None:
            return not_ready()
        known = service.runtime.heads["intent"].labels
        unknown = [i for i in body.pilot or [] if i not in known]
        if unknown:
            msg = f"unknown intents {unknown}; the model's intents are {', '.join(known)}"
            return _invalid([{"loc": "pilot", "msg": msg}])
        current = service.rollout.state.to_dict()
        changes = body.model_dump(include=body.model_fields_set)
        state = RolloutState.from_dict({**current, **changes}, "the admin request")
        try:
            stored = await anyio.to_thread.run_sync(service.rollout.write, state, "admin endpoint")
        except Exception as exc:  # the file or database cannot be written: nothing changed
            log.exception("rollout state not stored")
            return _error(503, f"the rollout state could not be stored ({exc}); retry")
        # every replica re-reads a shared state at most this late: acknowledge after it
        await asyncio.sleep(service.rollout.max_staleness_s)
        log.warning("rollout changed through the admin endpoint: %s", stored.to_dict())
        return stored.to_dict()

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses=errors_4xx,
    )
    async def classify(body: ClassifyRequest, request: Request, response: Response) -> Any:
        """Classify and route one or more messages (one message: a list of one)."""
        if service.runtime is None:
            return not_ready()
        messages = body.messages
        allowed = [*service.runtime.languages, UNDETERMINED]
        if errors := _unknown_langs(messages, allowed):
            return _invalid(errors, "; omit lang to have it detected")
        client = request.client.host if request.client else "unknown"
        ids = [m.id or uuid.uuid4().hex for m in messages]
        arms = service.arms(ids)
        started = time.perf_counter()
        try:
            predictions = await decide(client, messages, arms)
        except Busy as busy:
            refused = _error(busy.status, busy.detail)
            refused.headers["Retry-After"] = str(busy.retry_after)
            return refused
        if service.predlog is not None:
            latency_ms = 1000 * (time.perf_counter() - started)
            records = service.records(messages, predictions, ids, arms, latency_ms)
            if not await anyio.to_thread.run_sync(service.append, records):
                response.headers["X-Prediction-Log"] = "failed"
        service.shadow(messages, ids, arms)  # after this answer, never delaying it
        return {
            "model_version": service.runtime.model_version,
            "predictions": [
                {"message_id": i, **p.to_dict()} for i, p in zip(ids, predictions, strict=True)
            ],
        }

    async def decide(client: str, messages: list[Any], arms: list[str]) -> list[Any]:
        """Each message decided by its arm's model, in message order."""
        if "challenger" not in arms:
            return await service.scheduler.submit(client, messages)
        parts = {
            arm: [i for i, a in enumerate(arms) if a == arm] for arm in ("champion", "challenger")
        }
        runs = {"champion": None, "challenger": lambda m: service.classify(m, service.challenger)}
        decided = await asyncio.gather(
            *(
                service.scheduler.submit(client, [messages[i] for i in rows], run=runs[arm])
                for arm, rows in parts.items()
                if rows
            )
        )
        out: list[Any] = [None] * len(messages)
        for rows, predictions in zip([r for r in parts.values() if r], decided, strict=True):
            for i, prediction in zip(rows, predictions, strict=True):
                out[i] = prediction
        return out

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


#: the environment variable through which ``run`` hands the serve config to every worker
SERVE_CONFIG_ENV = "TRIAGE_SERVE_CONFIG"


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the serve config ``run`` put in the environment
    (uvicorn's factory: with several workers each process builds its own app)."""
    from omegaconf import OmegaConf

    from triage.config.groups import ServeConfig

    data = json.loads(os.environ[SERVE_CONFIG_ENV])
    scfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ServeConfig), data))
    HeadTimeoutProtocol.head_timeout_s = scfg.timeouts.request_head
    return create_app(scfg)


def run(cfg: Config) -> None:
    """``triage serve``: serve ``cfg.serve.bundle`` with uvicorn in the foreground, in
    ``serve.workers`` processes."""
    import uvicorn

    scfg = cfg.serve
    manifest = read_manifest(scfg.bundle)  # a missing bundle fails here, before listening
    log.info(
        "serving %s (model %s) on http://%s:%d with %d worker(s)",
        scfg.bundle,
        manifest.model_version,
        scfg.host,
        scfg.port,
        scfg.workers,
    )
    os.environ[SERVE_CONFIG_ENV] = json.dumps(to_container(scfg))
    uvicorn.run(
        "triage.serving.api:app_from_environment",
        factory=True,
        workers=scfg.workers,
        host=scfg.host,
        port=scfg.port,
        log_level=scfg.log_level,
        http=HeadTimeoutProtocol,
        timeout_keep_alive=scfg.timeouts.keep_alive,
        limit_concurrency=scfg.max_connections,
    )

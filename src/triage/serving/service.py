"""What stands behind the HTTP app: the runtime (loaded in the background), the prediction log
and the metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from triage.errors import ConfigError
from triage.serving.metrics import Metrics
from triage.serving.predlog import PredictionLog
from triage.serving.record import Prediction
from triage.serving.runtime import Runtime
from triage.serving.scheduler import FairScheduler
from triage.text import mask_pii

log = logging.getLogger(__name__)


class Service:
    """The loaded model, the prediction log and the metrics behind one app."""

    def __init__(self, scfg: Any, load: Callable[[], Runtime]) -> None:
        self.cfg = scfg
        self._load = load
        self.runtime: Runtime | None = None
        self.load_error: str | None = None
        self.metrics = Metrics()
        self.predlog: PredictionLog | None = None
        fair = scfg.fairness
        # one model call at a time (see triage.serving.api), clients in turn
        self.scheduler = FairScheduler(
            self.classify,
            lambda messages: self.runtime.token_counts([m.text for m in messages]),
            fair.chunk_tokens,
            fair.max_client_requests,
            fair.max_queued_messages,
        )
        self.metrics.queued.set_function(lambda: self.scheduler.queued_messages)

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
            raise ConfigError(
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

    def classify(self, messages: Sequence[Any]) -> list[Prediction]:
        """Classify in one model call (the scheduler's unit of work)."""
        assert self.runtime is not None
        started = time.perf_counter()
        predictions = self.runtime.classify(
            [m.text for m in messages], [m.lang for m in messages], self.cfg.batch_size
        )
        self.metrics.inference.observe(time.perf_counter() - started)
        for p in predictions:
            self.metrics.decisions.labels(p.intent, p.decision, p.action).inc()
        return predictions

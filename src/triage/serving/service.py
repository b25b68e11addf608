"""What stands behind the HTTP app: the runtime (loaded in the background), the challenger model
(shadow and canary), the rollout state, the prediction log and the metrics.

**Champion and challenger.** ``serve.shadow_bundle`` names a second bundle, the challenger. It
scores every message after the response is sent, as background work of the scheduler (only
while no client waits; past its queue bound it is dropped and counted), and its predictions are
logged with the same message id, its model version and ``rollout.arm = "shadow"``. With
``serve.canary_share`` > 0 that share of messages (by a hash of the message id, so a retried
message stays on its arm) is *decided* by the challenger, and the champion scores those in the
shadow instead. A challenger that fails to load, crashes or is slow never fails or delays an
answer: everything is decided by the champion then, and the failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from triage.serving.rollout import RolloutFile, RolloutState, apply
from triage.serving.runtime import Runtime
from triage.serving.scheduler import FairScheduler
from triage.serving.shared import RolloutTable, SqlPredictionLog, open_prediction_log
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
        self.predlog: PredictionLog | SqlPredictionLog | None = None
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
        # opened with the bundle (its pilot default)
        self.rollout: RolloutFile | RolloutTable | None = None
        if not 0.0 <= scfg.canary_share <= 1.0 or (scfg.canary_share and not scfg.shadow_bundle):
            raise ConfigError(
                f"serve.canary_share={scfg.canary_share}: a share in [0, 1], and above 0 only "
                "with serve.shadow_bundle (the challenger that decides that share)"
            )
        self.challenger: Runtime | None = None
        self.challenger_error: str | None = None
        self._shadow_tasks: set[asyncio.Task] = set()

    def load_in_background(self) -> threading.Thread:
        def target() -> None:
            started = time.perf_counter()
            try:
                runtime = self._load()
                default = RolloutState(pilot=runtime.routing.automation_enabled)
                rcfg = self.cfg.rollout
                self.rollout = (
                    RolloutTable(rcfg.state_url, default)
                    if rcfg.state_url
                    else RolloutFile(rcfg.state_file, default)
                )
            except Exception as exc:  # reported by /readyz and the log; the process stays up
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "the model bundle or the rollout state failed to load: %s", self.load_error
                )
                return
            self.metrics.automation.set_function(
                lambda: float(self.rollout is not None and self.rollout.state.automation)
            )
            self.runtime = runtime
            self.metrics.ready.set(1)
            self.metrics.model.labels(runtime.model_version).set(1)
            log.info(
                "model %s ready in %.2f s", runtime.model_version, time.perf_counter() - started
            )
            if self.cfg.shadow_bundle:
                self._load_challenger()

        thread = threading.Thread(target=target, name="load-bundle", daemon=True)
        thread.start()
        return thread

    def _load_challenger(self) -> None:
        try:
            challenger = Runtime.load(
                self.cfg.shadow_bundle, threads=self.cfg.threads, verify=self.cfg.verify_bundle
            )
        except Exception as exc:  # the champion serves alone; /v1/model and the log say why
            self.challenger_error = f"{type(exc).__name__}: {exc}"
            log.error("the shadow bundle failed to load (champion only): %s", self.challenger_error)
            return
        self.challenger = challenger
        self.metrics.challenger.labels(challenger.model_version).set(1)
        log.info(
            "challenger %s ready (canary share %s)", challenger.model_version, self.cfg.canary_share
        )

    def arms(self, ids: Sequence[str]) -> list[str]:
        """Which model decides each message: ``challenger`` for ``serve.canary_share`` of the
        message ids (a stable hash), else ``champion``."""
        share = self.cfg.canary_share if self.challenger is not None else 0.0
        return [
            "challenger" if share > 0 and _unit_hash(message_id) < share else "champion"
            for message_id in ids
        ]

    def shadow(self, messages: Sequence[Any], ids: Sequence[str], arms: Sequence[str]) -> None:
        """Have the model that did not decide score ``messages`` in the background, after the
        response (a no-op without a challenger)."""
        if self.challenger is None:
            return
        task = asyncio.create_task(self._shadow(messages, ids, arms))
        self._shadow_tasks.add(task)  # referenced until done
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self, messages: Sequence[Any], ids: Sequence[str], arms: Sequence[str]
    ) -> None:
        other = {"champion": self.challenger, "challenger": self.runtime}
        for arm, runtime in other.items():
            picked = [i for i, a in enumerate(arms) if a == arm]
            if not picked or runtime is None:
                continue
            batch = [messages[i] for i in picked]
            future = await self.scheduler.submit_background(
                batch, lambda m, r=runtime: self.score(m, r)
            )
            if future is None:
                self.metrics.shadow.labels("dropped").inc(len(batch))
                continue
            try:
                predictions = [p for chunk in await future for p in chunk]
            except Exception:
                self.metrics.shadow.labels("failed").inc(len(batch))
                log.exception("shadow scoring failed for %d message(s)", len(batch))
                continue
            self.metrics.shadow.labels("scored").inc(len(batch))
            records = self.records(
                batch, predictions, [ids[i] for i in picked], ["shadow"] * len(batch)
            )
            await asyncio.to_thread(self.append, records)

    def open_log(self) -> None:
        pcfg = self.cfg.prediction_log
        if not pcfg.enabled:
            log.info("prediction log off (serve.prediction_log.enabled=false)")
            return
        try:
            self.predlog = open_prediction_log(pcfg.url or pcfg.path, pcfg.retention_days)
        except Exception as exc:
            raise ConfigError(
                f"cannot open the prediction log {pcfg.url or pcfg.path}: {exc}; fix "
                "serve.prediction_log.path (or .url) or set serve.prediction_log.enabled=false"
            ) from exc
        where = pcfg.path if not pcfg.url else "the database of serve.prediction_log.url"
        log.info("prediction log %s (retention %s days)", where, pcfg.retention_days)

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
        self,
        messages: Sequence[Any],
        predictions: Sequence[Prediction],
        ids: Sequence[str],
        arms: Sequence[str],
        latency_ms: float | None = None,
    ) -> list[dict[str, Any]]:
        """Prediction-log records; ``rollout`` holds the state in force, the message's arm
        (``champion``, ``challenger``, or ``shadow`` for the model that did not decide) and the
        time its request waited for its decisions (``latency_ms``; not for the shadow)."""
        now = datetime.now(UTC).isoformat()
        masked = bool(self.cfg.pii_mask)
        state = {} if self.rollout is None else self.rollout.state.logged()
        return [
            {
                **prediction.to_dict(),
                "message_id": message_id,
                "created_at": now,
                "text": mask_pii(message.text) if masked else message.text,
                "text_masked": masked,
                "channel": message.channel,
                "rollout": {**state, "arm": arm, "latency_ms": latency_ms},
            }
            for message, prediction, message_id, arm in zip(
                messages, predictions, ids, arms, strict=True
            )
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

    def score(self, messages: Sequence[Any], runtime: Runtime) -> list[Prediction]:
        """``runtime``'s predictions as the rollout state in force allows them."""
        predictions = runtime.classify(
            [m.text for m in messages], [m.lang for m in messages], self.cfg.batch_size
        )
        if self.rollout is not None:  # the kill switch and the pilot list in force now
            self.rollout.refresh()  # a stat: a change is honoured from the next model call on
            state, review = self.rollout.state, str(runtime.routing.not_confident.action)
            predictions = [apply(state, p, review) for p in predictions]
        return predictions

    def classify(self, messages: Sequence[Any], runtime: Runtime | None = None) -> list[Prediction]:
        """Decide in one model call (the scheduler's unit of work), by ``runtime`` (default:
        the champion), counted in the metrics."""
        assert self.runtime is not None
        runtime = runtime or self.runtime
        started = time.perf_counter()
        predictions = self.score(messages, runtime)
        self.metrics.inference.observe(time.perf_counter() - started)
        for p in predictions:
            self.metrics.decisions.labels(p.intent, p.decision, p.action).inc()
            if p.novelty is not None and runtime.novelty is not None:
                self.metrics.novelty.observe(p.novelty)
                self.metrics.far_out.inc(int(runtime.novelty.far(p.novelty)))
        return predictions


def _unit_hash(message_id: str) -> float:
    """A message id as a number in [0, 1), the same in every process and run."""
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64

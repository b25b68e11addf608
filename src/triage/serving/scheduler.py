"""Fair model scheduling: one model call at a time, the waiting clients served in turn.

A request's messages are cut into chunks of at most ``chunk_tokens`` tokens (at least one
message each); one dispatcher runs the chunks one model call at a time, taking the next chunk
from the next waiting client in round-robin order. A client that sends 64 maximum-length
messages therefore delays a one-message request by at most one chunk (about one long message's
model time), not by its whole request.

Work is bounded: a client with ``max_client_requests`` requests already waiting gets
:class:`Busy` with status 429, and a request that would take a non-empty queue over
``max_queued_messages`` gets :class:`Busy` with status 503; both carry the seconds after which a
retry is likely to be served (the ``Retry-After`` header).

Background work (a shadow model scoring messages already answered) runs only while no client
waits, so it delays a client by at most the one chunk in progress; past
``max_background_messages`` waiting it is dropped, never queued without limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

#: weight of the latest chunk in the running seconds-per-message estimate (for Retry-After)
_EWMA = 0.2


class Busy(Exception):
    """The request was not queued: ``status`` (429 or 503) and ``retry_after`` seconds."""

    def __init__(self, status: int, retry_after: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.retry_after, self.detail = status, retry_after, detail


@dataclass
class _Job:
    """One request's work: its chunks (lists of message positions) and their results."""

    messages: Sequence[Any]
    chunks: deque[list[int]]
    future: asyncio.Future
    run: Callable[[Sequence[Any]], list[Any]]
    results: list[list[Any]] = field(default_factory=list)


def chunk_positions(token_counts: Sequence[int], chunk_tokens: int) -> list[list[int]]:
    """Cut positions ``0..n-1`` into consecutive chunks of at most ``chunk_tokens`` tokens (a
    message longer than that is a chunk of its own)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, count in enumerate(token_counts):
        if current and total + count > chunk_tokens:
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += count
    if current:
        chunks.append(current)
    return chunks


class FairScheduler:
    """Runs ``run(messages) -> results`` one chunk at a time, clients in turn.

    Args:
        run: classify a list of messages (called in a worker thread, one call at a time).
        count_tokens: the token count of each message (called in a worker thread).
        chunk_tokens: tokens per model call when clients wait (the fairness granularity).
        max_client_requests: requests one client may have waiting or running.
        max_queued_messages: messages all clients may have waiting or running.
        max_background_messages: background messages that may wait (more are dropped).
    """

    def __init__(
        self,
        run: Callable[[Sequence[Any]], list[Any]],
        count_tokens: Callable[[Sequence[Any]], list[int]],
        chunk_tokens: int,
        max_client_requests: int,
        max_queued_messages: int,
        max_background_messages: int = 1024,
    ) -> None:
        self._run, self._count_tokens = run, count_tokens
        self.chunk_tokens = chunk_tokens
        self.max_client_requests = max_client_requests
        self.max_queued_messages = max_queued_messages
        self._clients: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._requests: dict[str, int] = {}
        self.queued_messages = 0
        self.max_background_messages = max_background_messages
        self._background: deque[_Job] = deque()
        self.background_messages = 0
        self._dispatcher: asyncio.Task | None = None
        self._seconds_per_message = 0.05

    def retry_after(self) -> int:
        """Whole seconds until the queued work is likely done (at least 1)."""
        return max(1, math.ceil(self.queued_messages * self._seconds_per_message))

    async def submit(
        self,
        client: str,
        messages: Sequence[Any],
        run: Callable[[Sequence[Any]], list[Any]] | None = None,
    ) -> list[Any]:
        """Classify ``messages`` for ``client`` in its turns (with ``run``, default the
        scheduler's); results in message order.

        Raises:
            Busy: the client or the whole queue is at its bound (nothing was queued).
        """
        if self._requests.get(client, 0) >= self.max_client_requests:
            raise Busy(
                429,
                self.retry_after(),
                f"this client already has {self.max_client_requests} requests in progress; "
                "wait for their answers before sending more",
            )
        if self.queued_messages and self.queued_messages + len(messages) > self.max_queued_messages:
            raise Busy(
                503,
                self.retry_after(),
                f"the service is at its limit of {self.max_queued_messages} queued messages; "
                "retry after the Retry-After seconds",
            )
        self._requests[client] = self._requests.get(client, 0) + 1
        self.queued_messages += len(messages)
        job: _Job | None = None
        try:
            counts = await anyio.to_thread.run_sync(self._count_tokens, messages)
            chunks = deque(chunk_positions(counts, self.chunk_tokens))
            future = asyncio.get_running_loop().create_future()
            job = _Job(messages, chunks, future, run or self._run)
            self._clients.setdefault(client, deque()).append(job)
            self._start()
            parts = await job.future
            return [result for chunk in parts for result in chunk]
        finally:
            self._requests[client] -= 1
            if not self._requests[client]:
                del self._requests[client]
            self.queued_messages -= len(messages)
            if job is not None:  # cancelled (the client went away): drop its waiting chunks
                job.chunks.clear()
                job.future.cancel()

    async def submit_background(
        self, messages: Sequence[Any], run: Callable[[Sequence[Any]], list[Any]]
    ) -> asyncio.Future | None:
        """Queue ``run(messages)`` to run while no client waits; the future of its results
        (in chunks), or None when the background queue is full (nothing queued)."""
        if self.background_messages + len(messages) > self.max_background_messages:
            return None
        self.background_messages += len(messages)
        try:
            counts = await anyio.to_thread.run_sync(self._count_tokens, messages)
        except BaseException:
            self.background_messages -= len(messages)
            raise
        future = asyncio.get_running_loop().create_future()
        chunks = deque(chunk_positions(counts, self.chunk_tokens))
        self._background.append(_Job(messages, chunks, future, run))
        future.add_done_callback(lambda _: self._background_done(len(messages)))
        self._start()
        return future

    def _background_done(self, n: int) -> None:
        self.background_messages -= n

    def _start(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())

    async def _run_chunk(self, job: _Job, positions: list[int]) -> tuple[Any, Exception | None]:
        try:
            results = await anyio.to_thread.run_sync(job.run, [job.messages[i] for i in positions])
        except Exception as exc:  # this job fails; the others go on
            return None, exc
        return results, None

    @staticmethod
    def _finish_chunk(job: _Job, results: Any, failure: Exception | None) -> None:
        if job.future.done():  # cancelled meanwhile
            return
        if failure is not None:
            job.chunks.clear()
            job.future.set_exception(failure)
            return
        job.results.append(results)  # chunks run in order, one at a time
        if not job.chunks:
            job.future.set_result(job.results)

    async def _dispatch(self) -> None:
        """Run chunks until no work waits: the first client's next chunk, then that client goes
        to the back of the line; background chunks only while no client waits."""
        while self._clients or self._background:
            if not self._clients:
                job = self._background[0]
                positions = job.chunks.popleft()
                if not job.chunks:
                    self._background.popleft()
                self._finish_chunk(job, *await self._run_chunk(job, positions))
                continue
            client, jobs = next(iter(self._clients.items()))
            while jobs and not jobs[0].chunks:  # cancelled or failed jobs
                jobs.popleft()
            if not jobs:
                del self._clients[client]
                continue
            job = jobs[0]
            positions = job.chunks.popleft()
            if not job.chunks:
                jobs.popleft()
            started = time.perf_counter()
            results, failure = await self._run_chunk(job, positions)
            # back of the line, behind every client that arrived meanwhile
            if jobs:
                self._clients.move_to_end(client)
            else:
                del self._clients[client]
            if failure is None:
                per_message = (time.perf_counter() - started) / len(positions)
                self._seconds_per_message += _EWMA * (per_message - self._seconds_per_message)
            self._finish_chunk(job, results, failure)

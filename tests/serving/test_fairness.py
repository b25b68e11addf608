"""Fair serving: the scheduler serves waiting clients in turn and bounds the queue (429/503 with
Retry-After), a slow body gets 408, and a connection that sends its head too slowly is closed."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.audit.support import free_port
from tests.serving.test_api import serve_config, wait_ready
from triage.serving.api import create_app
from triage.serving.limits import BodyLimitMiddleware, HeadTimeoutProtocol
from triage.serving.runtime import Runtime
from triage.serving.scheduler import Busy, FairScheduler, chunk_positions


def test_chunk_positions_cut_by_tokens():
    assert chunk_positions([100, 100, 100, 10, 10, 300, 5], 256) == [[0, 1], [2, 3, 4], [5], [6]]
    assert chunk_positions([], 256) == []


def scheduler(calls: list, delay: float = 0.01, **bounds) -> FairScheduler:
    """A scheduler whose model doubles numbers and records each call's input."""

    def run(messages):
        calls.append(list(messages))
        time.sleep(delay)
        return [2 * m for m in messages]

    kwargs = {"chunk_tokens": 2, "max_client_requests": 4, "max_queued_messages": 1000}
    return FairScheduler(run, lambda messages: [1] * len(messages), **{**kwargs, **bounds})


def test_a_light_client_waits_one_chunk_not_a_bulk_request():
    calls: list = []

    async def scenario():
        fair = scheduler(calls)
        bulk = asyncio.create_task(fair.submit("bulk", list(range(100, 120))))  # 10 chunks
        await asyncio.sleep(0.005)  # the bulk request's first chunk is running
        light = await fair.submit("light", [7])
        assert light == [14]
        assert await bulk == [2 * m for m in range(100, 120)]  # in order, nothing lost

    asyncio.run(scenario())
    assert calls.index([7]) <= 2  # after at most the running chunk and the next
    assert len(calls) == 11 and all(len(c) <= 2 for c in calls)


def test_clients_alternate_and_requests_of_one_client_queue():
    calls: list = []

    async def scenario():
        fair = scheduler(calls)
        first = asyncio.create_task(fair.submit("a", [1, 2, 3, 4]))
        await asyncio.sleep(0.005)  # its first chunk is running
        rest = [fair.submit("a", [5, 6]), fair.submit("b", [10, 20, 30, 40])]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [[2, 4, 6, 8], [10, 12], [20, 40, 60, 80]]
    assert calls == [[1, 2], [10, 20], [3, 4], [30, 40], [5, 6]]


def test_bounds_refuse_with_retry_after_and_queue_nothing():
    calls: list = []

    async def scenario():
        fair = scheduler(calls, delay=0.05, max_client_requests=1, max_queued_messages=3)
        first = asyncio.create_task(fair.submit("a", [1, 2]))
        await asyncio.sleep(0.01)
        with pytest.raises(Busy) as too_many:
            await fair.submit("a", [3])
        with pytest.raises(Busy) as full:
            await fair.submit("b", [4, 5])
        assert fair.queued_messages == 2
        assert await first == [2, 4]
        assert await fair.submit("b", [6, 7, 8, 9]) == [12, 14, 16, 18]  # an empty queue takes it
        return too_many.value, full.value

    too_many, full = asyncio.run(scenario())
    assert too_many.status == 429 and too_many.retry_after >= 1 and "in progress" in str(too_many)
    assert full.status == 503 and full.retry_after >= 1 and "queued messages" in str(full)
    assert [3] not in calls and [4, 5] not in calls


def test_a_failing_chunk_fails_its_request_only_and_a_cancelled_request_stops():
    calls: list = []

    def run(messages):
        calls.append(list(messages))
        time.sleep(0.01)
        if -1 in messages:
            raise ValueError("bad message")
        return list(messages)

    async def scenario():
        fair = FairScheduler(run, lambda m: [1] * len(m), 1, 4, 1000)
        bad = asyncio.create_task(fair.submit("a", [-1, 2, 3]))
        gone = asyncio.create_task(fair.submit("b", list(range(50, 60))))
        good = asyncio.create_task(fair.submit("c", [4]))
        await asyncio.sleep(0.015)
        gone.cancel()
        with pytest.raises(ValueError, match="bad message"):
            await bad
        assert await good == [4]
        await asyncio.sleep(0.05)
        assert fair.queued_messages == 0

    asyncio.run(scenario())
    assert [2] not in calls  # the failed request's later chunks were dropped
    assert sum(1 for c in calls if c[0] >= 50) <= 2  # and so were the cancelled request's


@pytest.fixture
def blocking_service(root, bundle, tmp_path):
    """An app whose model call waits for ``release``; one request per client at a time."""
    release = threading.Event()

    def load() -> Runtime:
        runtime = Runtime.load(bundle)
        classify = runtime.classify

        def blocked(*args, **kwargs):
            release.wait(30)
            return classify(*args, **kwargs)

        runtime.classify = blocked
        return runtime

    scfg = serve_config(
        root, bundle, tmp_path / "log.sqlite", "serve.fairness.max_client_requests=1"
    )
    with TestClient(create_app(scfg, load=load)) as client:
        release.set()
        wait_ready(client)
        release.clear()
        yield client, release


def test_api_answers_429_with_retry_after_to_a_client_over_its_bound(blocking_service):
    client, release = blocking_service
    body = {"messages": [{"text": "Waar blijft mijn pakket?"}]}
    answers = []
    first = threading.Thread(target=lambda: answers.append(client.post("/v1/classify", json=body)))
    first.start()
    deadline = time.monotonic() + 10
    while "triage_queued_messages 1.0" not in client.get("/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    refused = client.post("/v1/classify", json=body)
    release.set()
    first.join(30)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "in progress" in refused.json()["detail"]
    assert answers[0].status_code == 200
    assert 'triage_http_requests_total{method="POST",path="/v1/classify",status="429"} 1.0' in (
        client.get("/metrics").text
    )


def test_a_body_that_does_not_arrive_gets_408():
    async def app(scope, receive, send):  # never reached
        raise AssertionError("the app must not see the request")

    sent: list = []

    async def scenario():
        middleware = BodyLimitMiddleware(app, max_body_bytes=1000, timeout_s=0.05)
        scope = {"type": "http", "headers": [(b"content-length", b"10")]}

        chunks = [{"type": "http.request", "body": b"abcd", "more_body": True}]

        async def receive():  # a client that stops after 4 bytes
            if chunks:
                return chunks.pop()
            await asyncio.sleep(10)

        async def send(message):
            sent.append(message)

        await middleware(scope, receive, send)

    asyncio.run(scenario())
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["detail"].startswith("the request body did not arrive")


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(1000):
        received += chunk
    return received


def test_a_slow_request_head_is_closed_and_a_whole_one_served():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(
        app,
        port=port,
        log_level="warning",
        http=type("FastHeadTimeout", (HeadTimeoutProtocol,), {"head_timeout_s": 0.3}),
        timeout_keep_alive=30,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as whole:
            whole.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _read_until_closed(whole)  # idle past the head timeout after a response
            assert b"200 OK" in answer and answer.endswith(b"ok")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as slow:
            started = time.monotonic()
            slow.sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(0.1)
            slow.sendall(b"Host: x\r\n")  # still no end of head
            assert _read_until_closed(slow) == b""  # closed by the server, unanswered
            assert time.monotonic() - started < 2
    finally:
        server.should_exit = True
        thread.join(10)


def test_background_work_waits_for_clients_and_is_dropped_when_full():
    calls: list = []

    def shadow(messages):
        calls.append(["shadow", *messages])
        time.sleep(0.01)
        return list(messages)

    async def scenario():
        fair = scheduler(calls, max_background_messages=3)
        client = asyncio.create_task(fair.submit("a", [1, 2, 3, 4, 5, 6]))  # 3 chunks
        await asyncio.sleep(0.005)
        background = await fair.submit_background([7, 8], shadow)
        assert await fair.submit_background([9, 10], shadow) is None  # full: dropped
        assert await client == [2, 4, 6, 8, 10, 12]
        assert await background == [[7, 8]]
        assert fair.background_messages == 0

    asyncio.run(scenario())
    assert calls[-1] == ["shadow", 7, 8]  # after every client chunk

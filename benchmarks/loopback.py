"""What the serving benchmarks share: a `triage serve` subprocess on a free loopback port, latency
percentiles, and httpx clients that each send from their own loopback address (127.0.0.k), as
distinct clients do: the service schedules and bounds work per client address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99 and mean in milliseconds, and the count."""
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "n": len(ms),
    }


def client(k: int, **kwargs) -> httpx.AsyncClient:
    """An async client sending from loopback address ``127.0.0.{k + 2}`` (Linux routes all of
    127.0.0.0/8 to the loopback interface)."""
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{k + 2}")
    return httpx.AsyncClient(transport=transport, timeout=60, **kwargs)


def start_service(bundle: Path, log_path: Path, *overrides: str) -> tuple[subprocess.Popen, str]:
    """Start ``triage serve`` on a free port and wait until it is ready; the process and its
    base URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "triage.cli", "serve",
            f"serve.bundle={bundle}", f"serve.port={port}", "serve.log_level=warning",
            f"serve.prediction_log.path={log_path}", *overrides,
        ],
        env={**os.environ, "TRIAGE_ROOT": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"the service did not start: {server.stderr.read()}")
        time.sleep(0.1)


@contextmanager
def running_service(bundle: Path, log_path: Path, *overrides: str) -> Iterator[str]:
    """``start_service`` as a context: yields the base URL, stops the service after."""
    server, url = start_service(bundle, log_path, *overrides)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(10)

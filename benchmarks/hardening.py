"""The service under hostile but legal load, on loopback: steady load, head-of-line blocking by a
bulk client, slowloris connections, and kill -9 under load. Prints a Markdown table.

Not a test: numbers depend on the machine. Run it on a quiet machine (never beside a training
run). Each client sends from its own loopback address (see ``loopback.client``).

- **load**: ``--clients`` clients, each sending one message per request back to back, for
  ``--duration`` seconds: requests, failures (any status but 200, or a transport error), latency.
- **head-of-line**: one bulk client keeps two requests of 64 × 2,000-character messages in
  flight; five light clients each send one message every 0.5 s. Light latency with the bulk
  client on, and without it (the baseline), and the bulk client's messages/s.
- **slowloris**: ``--slow-sockets`` connections each send half a request head and then a byte per
  second; how many the server has closed after ``serve.timeouts.request_head`` + 2 s, and light
  latency meanwhile.
- **kill -9**: ``--clients`` clients under load, the server killed with SIGKILL after
  ``--kill-after`` seconds; every answered prediction's id is looked up in the prediction log
  (SQLite ``integrity_check`` too). Run ``--kills`` times.

    .venv/bin/python benchmarks/hardening.py
    .venv/bin/python benchmarks/hardening.py --duration 10 --kills 1   # quicker
    .venv/bin/python benchmarks/hardening.py serve.fairness.chunk_tokens=100000  # no interleaving
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx
import loopback
from loopback import ROOT, percentiles

LIGHT = "Waar blijft mijn pakket? Ik heb het vorige week besteld."
#: a 2,000-character message (the service's limit), Dutch so that it tokenises like real text
LONG = ("Mijn bestelling is nog steeds niet aangekomen en ik wacht al twee weken. " * 28)[:2000]


async def closed_loop(url: str, clients: int, duration: float, first: int = 0) -> dict:
    """``clients`` clients sending one message per request back to back for ``duration`` s;
    returns latencies, statuses and the ids of the answered predictions."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    answered: list[str] = []
    stop = time.perf_counter() + duration

    async def run(k: int) -> None:
        async with loopback.client(first + k) as http:
            j = 0
            while time.perf_counter() < stop:
                message = {"id": f"c{k}-{j}", "text": f"{LIGHT} ({j})"}
                started = time.perf_counter()
                try:
                    response = await http.post(url, json={"messages": [message]})
                    status = str(response.status_code)
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    answered.append(message["id"])
                j += 1

    await asyncio.gather(*(run(k) for k in range(clients)), return_exceptions=True)
    return {"latency": percentiles(latencies), "statuses": statuses, "answered": answered}


async def head_of_line(url: str, duration: float, bulk: bool) -> dict:
    """Five light clients (one message every 0.5 s each), with or without the bulk client."""
    light: list[float] = []
    bulk_messages = 0
    stop = time.perf_counter() + duration

    async def light_client(k: int) -> None:
        async with loopback.client(10 + k) as http:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = await http.post(url, json={"messages": [{"text": LIGHT}]})
                assert response.status_code == 200, response.text
                light.append(time.perf_counter() - started)
                await asyncio.sleep(max(0.0, 0.5 - (time.perf_counter() - started)))

    async def bulk_client(http: httpx.AsyncClient) -> None:
        nonlocal bulk_messages
        body = {"messages": [{"text": LONG}] * 64}
        while time.perf_counter() < stop:
            response = await http.post(url, json=body)
            if response.status_code == 200:
                bulk_messages += 64

    tasks = [light_client(k) for k in range(5)]
    started = time.perf_counter()
    async with loopback.client(0) as http:
        if bulk:
            tasks += [bulk_client(http), bulk_client(http)]
        await asyncio.gather(*tasks)
    return {
        "light": percentiles(light),
        "bulk_msg_s": bulk_messages / (time.perf_counter() - started),
    }


async def slowloris(url: str, sockets: int, head_timeout: float) -> dict:
    """Open ``sockets`` connections that trickle a request head; count those the server closed
    after ``head_timeout + 2`` s, timing light requests meanwhile."""
    host, port = url.removeprefix("http://").split(":")
    opened = []
    for _ in range(sockets):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        opened.append(s)
    light: list[float] = []
    deadline = time.perf_counter() + head_timeout + 2
    async with loopback.client(30) as http:
        while time.perf_counter() < deadline:
            for s in opened:  # a byte a second keeps each head unfinished
                with contextlib.suppress(OSError):
                    s.send(b"X")
            started = time.perf_counter()
            response = await http.post(url + "/v1/classify", json={"messages": [{"text": LIGHT}]})
            assert response.status_code == 200, response.text
            light.append(time.perf_counter() - started)
            await asyncio.sleep(1.0)
    closed = 0
    for s in opened:
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass  # still open: nothing to read
        except OSError:
            closed += 1
        s.close()
    return {"sockets": sockets, "closed": closed, "light": percentiles(light)}


def kill_under_load(bundle: Path, clients: int, kill_after: float, folder: Path) -> dict:
    """Serve, load with ``clients`` clients, SIGKILL the server after ``kill_after`` s; then check
    that every answered id is in the log."""
    log_path = folder / "predictions.sqlite"
    server, url = loopback.start_service(bundle, log_path)

    async def load_then_kill() -> dict:
        load = asyncio.create_task(closed_loop(f"{url}/v1/classify", clients, kill_after + 3))
        await asyncio.sleep(kill_after)
        server.send_signal(signal.SIGKILL)
        return await load

    result = asyncio.run(load_then_kill())
    server.wait(10)
    with sqlite3.connect(log_path) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        logged = {row[0] for row in db.execute("SELECT message_id FROM predictions")}
    answered = result["answered"]
    return {
        "answered": len(answered),
        "missing": sum(1 for i in answered if i not in logged),
        "integrity": integrity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "onnx")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--slow-sockets", type=int, default=400)
    parser.add_argument("--kill-after", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="serve.* overrides for the service")
    args = parser.parse_args()

    from triage.config import load_config

    head_timeout = load_config(args.overrides).serve.timeouts.request_head
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "predictions.sqlite"
        with loopback.running_service(args.bundle, log_path, *args.overrides) as url:
            classify = f"{url}/v1/classify"
            load = asyncio.run(closed_loop(classify, args.clients, args.duration))
            lat = load["latency"]
            failed = {s: n for s, n in load["statuses"].items() if s != "200"}
            rows.append(
                (
                    f"load: {args.clients} clients back to back, {args.duration:g} s",
                    f"{lat['n']} requests, failures {failed or 0}; p50 {lat['p50_ms']:.0f} ms, "
                    f"p99 {lat['p99_ms']:.0f} ms",
                )
            )
            for bulk in (False, True):
                hol = asyncio.run(head_of_line(classify, args.duration, bulk))
                light = hol["light"]
                rows.append(
                    (
                        "head-of-line: 5 light clients"
                        + (", 1 bulk client (2 × 64 × 2,000 chars)" if bulk else " alone"),
                        f"light p50 {light['p50_ms']:.0f} ms, p99 {light['p99_ms']:.0f} ms "
                        f"({light['n']} requests)"
                        + (f"; bulk {hol['bulk_msg_s']:.1f} msg/s" if bulk else ""),
                    )
                )
            slow = asyncio.run(slowloris(url, args.slow_sockets, head_timeout))
            rows.append(
                (
                    f"slowloris: {slow['sockets']} sockets trickling a head",
                    f"{slow['closed']} closed by the server within {head_timeout + 2:g} s; light "
                    f"p50 {slow['light']['p50_ms']:.0f} ms meanwhile",
                )
            )
        for k in range(args.kills):
            folder = Path(tmp) / f"kill{k}"
            folder.mkdir()
            killed = kill_under_load(args.bundle, args.clients, args.kill_after, folder)
            rows.append(
                (
                    f"kill -9 under {args.clients}-client load ({k + 1})",
                    f"{killed['missing']} of {killed['answered']} answered predictions missing "
                    f"from the log; integrity {killed['integrity']}",
                )
            )
    print("| scenario | result |\n|---|---|")
    for scenario, result in rows:
        print(f"| {scenario} | {result} |")


if __name__ == "__main__":
    main()

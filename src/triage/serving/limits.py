"""Limits at the connection: the request-size limit (413), the body deadline (408), and the
request-head deadline that closes slow ("slowloris") connections before they reach the app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol


class BodyLimitMiddleware:
    """Reads a request body whole before the app sees it (pure ASGI middleware): a body over
    ``max_body_bytes`` (by its stated length, or while reading a chunked upload) gets 413, one
    that has not fully arrived within ``timeout_s`` gets 408."""

    def __init__(self, app: Any, max_body_bytes: int, timeout_s: float) -> None:
        self.app, self.max_body_bytes, self.timeout_s = app, max_body_bytes, timeout_s

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await self._refuse(413, self._too_large(), scope, receive, send)
            return
        if (length.isdigit() and int(length) > 0) or b"transfer-encoding" in headers:
            try:
                with anyio.fail_after(self.timeout_s):
                    replayed, too_large = await self._read_capped(receive)
            except TimeoutError:
                detail = f"the request body did not arrive within {self.timeout_s:g} s"
                await self._refuse(408, detail, scope, receive, send, close=True)
                return
            if too_large:
                await self._refuse(413, self._too_large(), scope, receive, send)
                return
            receive = replayed
        await self.app(scope, receive, send)

    def _too_large(self) -> str:
        return (
            f"body over the limit of {self.max_body_bytes} bytes; send fewer or shorter "
            "messages per request"
        )

    @staticmethod
    async def _refuse(
        status: int,
        detail: str,
        scope: dict,
        receive: Callable,
        send: Callable,
        close: bool = False,
    ) -> None:
        headers = {"Connection": "close"} if close else None
        response = JSONResponse(
            {"detail": detail, "errors": []}, status_code=status, headers=headers
        )
        await response(scope, receive, send)

    async def _read_capped(self, receive: Callable) -> tuple[Callable, bool]:
        """Read the body; return a ``receive`` that replays it, and whether it went over
        ``max_body_bytes`` (reading stops there)."""
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


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection which has not sent a complete request
    head within ``head_timeout_s`` of opening or of its last response (uvicorn's keep-alive
    timeout stops counting once the first byte of a request arrives, so a client that sends its
    headers a byte at a time would hold the connection forever).

    ``head_timeout_s`` is set per process from ``serve.timeouts.request_head`` by
    :func:`triage.serving.api.app_from_environment` (uvicorn makes a protocol object per
    connection, from the class)."""

    head_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        """No request in progress since the timer was armed: idle or a head still arriving."""
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

"""The request-size limit: a body larger than a request at the configured limits can be is
refused with 413 before it is read whole (pure ASGI middleware)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse


class BodyLimitMiddleware:
    """Refuses a body over ``max_body_bytes`` with 413, by its stated length or, for a chunked
    upload, while reading it."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)

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

"""Request body limit enforced while reading: Content-Length is checked up front, received bytes as they arrive."""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.asgi import TrackedSend
from service.errors import BodyTooLargeError, error_response

logger = logging.getLogger(__name__)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_body_bytes`` with 413 without buffering them.

    A declared ``Content-Length`` over the limit is refused before the app runs; otherwise each received chunk
    is counted and the first one past the limit raises ``BodyTooLargeError`` inside the app's body reader, so a
    chunked upload stops being read at the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count bytes while the app reads."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            exc = BodyTooLargeError(self.max_body_bytes)
            response = error_response(413, "body_too_large", f"{exc.detail} (Content-Length is {declared})")
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLargeError as exc:  # raised outside a route's error handling (e.g. by another middleware)
            if tracked.started:
                raise
            await error_response(413, "body_too_large", str(exc.detail))(scope, receive, send)

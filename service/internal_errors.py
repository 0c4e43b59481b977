"""The catch-all 500 as a middleware inside the app, so an unhandled exception does not cost the connection.

Starlette hands an ``Exception`` handler to its outermost ``ServerErrorMiddleware``, which sends the response and
then re-raises; uvicorn, seeing an exception after a response started, closes the connection, and the client's
next pooled request on it fails with a reset. This middleware answers the 500 and returns normally instead.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from service.asgi import TrackedSend
from service.errors import error_response

logger = logging.getLogger(__name__)

INTERNAL_ERROR_DETAIL = "internal server error; see the service log"


class InternalErrorMiddleware:
    """Answers an exception no handler took with 500 ``internal_error`` and logs it with its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; on an unhandled exception before the response started, send the 500 body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if tracked.started:  # part of a response went out: only closing the connection can tell the client
                raise
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            await error_response(500, "internal_error", INTERNAL_ERROR_DETAIL)(scope, receive, send)

"""Small ASGI pieces the middlewares share."""

from __future__ import annotations

from starlette.types import Message, Send


class TrackedSend:
    """A ``send`` that records whether the response has started (after that, no other response can be sent)."""

    def __init__(self, send: Send) -> None:
        """Wrap ``send``."""
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        """Pass ``message`` on, noting the response start."""
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

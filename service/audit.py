"""The audit log: one JSON line per gallery write or delete, to the ``vireid.audit`` logger or appended to a file.

A line names the time (UTC, ISO 8601), the action (``gallery.add``, ``gallery.delete``), the key that made the
request by role (``write``, ``read`` or ``none``; never the key itself), the client address, the item ids, how many
items changed and the HTTP status. Refused writes (401, 403, 4xx) are logged too, with ``count`` 0.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import request_access

AUDIT_LOGGER = "vireid.audit"
GALLERY_ITEM_PREFIX = "/gallery/"

Action = Literal["gallery.add", "gallery.delete"]


def audited_action(method: str, path: str) -> tuple[Action, list[int]] | None:
    """The action a request performs and the ids its path names, or None for requests the log does not record."""
    if method == "POST" and path == "/gallery":
        return "gallery.add", []
    item = path.removeprefix(GALLERY_ITEM_PREFIX)
    if method == "DELETE" and path.startswith(GALLERY_ITEM_PREFIX) and item and "/" not in item:
        return "gallery.delete", [int(item)] if re.fullmatch(r"-?[0-9]+", item) else []
    return None


class AuditLog:
    """Where audit lines go: appended to ``path`` (one write and flush per line), or the ``vireid.audit`` logger."""

    def __init__(self, path: Path | None) -> None:
        """Create ``path`` if missing (so a wrong path fails at start-up), or make the logger emit at INFO.

        Raises:
            OSError: ``path`` cannot be opened for appending (missing folder, no permission).
        """
        self.path = path
        self.logger = logging.getLogger(AUDIT_LOGGER)
        if path is not None:
            try:
                path.open("a", encoding="utf-8").close()
            except OSError as exc:
                raise OSError(f"VIREID_AUDIT_LOG={path}: cannot append to the audit log: {exc}") from exc
            return
        self.logger.setLevel(logging.INFO)  # audit lines are never filtered by the service's log level
        if not self.logger.hasHandlers():  # e.g. plain `uvicorn --factory`: Python would drop INFO lines
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def write(self, event: dict[str, Any]) -> None:
        """Record one event as a JSON line."""
        line = json.dumps(event, separators=(",", ":"))
        if self.path is None:
            self.logger.info("%s", line)
            return
        with self.path.open("a", encoding="utf-8") as f:  # closed, so flushed, per line
            f.write(line + "\n")


def _added_ids(body: bytes) -> list[int]:
    """The ids of an ``AddResponse`` body."""
    return [int(i) for i in json.loads(body)["ids"]]


class AuditMiddleware:
    """Writes an ``AuditLog`` event for each gallery add and delete once it is answered, whatever the outcome.

    Sits outside ``service.auth.AuthMiddleware`` so that refused attempts are recorded, with the key role that
    middleware left in the scope; the ids of an add come from its 201 body, which passes through unchanged.
    """

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        """Wrap ``app``."""
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, noting the status (and an add's body), then write the event."""
        target = audited_action(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        action, ids = target
        status = 500
        body = bytearray()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and action == "gallery.add" and status == 201:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if action == "gallery.add":
                ids = _added_ids(bytes(body)) if status == 201 else []
            access = request_access(scope)
            client = scope.get("client")
            self.log.write(
                {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "action": action,
                    "key": access.key_name if access is not None else "none",
                    "client": client[0] if client else None,
                    "ids": ids,
                    "count": len(ids) if 200 <= status < 300 else 0,
                    "status": status,
                }
            )

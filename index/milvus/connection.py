"""One Milvus client with a timeout on every call, failures turned into ``GalleryUnavailableError``, and
reconnection with exponential backoff in a background thread.

While Milvus is unreachable (at start or later) every call raises ``GalleryUnavailableError`` naming the reason
at once, without waiting for the server; the reconnector probes it (``backoff`` doubling up to ``max_backoff``) and
runs ``on_connect`` (create or check the collection) before calls are let through again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from index.errors import GalleryError, GalleryUnavailableError, IndexMismatchError
from index.milvus.config import MilvusConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_BACKOFF_S = 0.2


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]


class MilvusConnection:
    """A Milvus client that reports unavailability instead of hanging, and reconnects in the background."""

    def __init__(self, config: MilvusConfig, on_connect: Callable[[MilvusClient], None]) -> None:
        """Nothing is contacted until ``start``."""
        self.config = config
        self._on_connect = on_connect
        self._client: MilvusClient | None = None
        self._ready = False
        self._reason = "not connected yet"
        self._state = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._reconnect_loop, name=f"milvus reconnect {config.uri}", daemon=True)

    def start(self) -> None:
        """Connect once now; if Milvus is unreachable, keep reconnecting in the background (calls raise meanwhile).

        Raises:
            IndexMismatchError: Milvus answered and the collection belongs to another model (never served).
        """
        self._try_connect()
        self._thread.start()

    @property
    def reason(self) -> str | None:
        """Why calls fail now, ``None`` while connected."""
        with self._state:
            return None if self._ready else self._reason

    def _try_connect(self) -> bool:
        try:
            if self._client is None:
                self._client = MilvusClient(
                    uri=self.config.uri,
                    token=self.config.token.get_secret_value() if self.config.token else "",
                    db_name=self.config.db_name or "",
                    timeout=self.config.timeout_s,
                )
            self._on_connect(self._client)
        except IndexMismatchError as exc:
            self._set_down(str(exc))
            raise
        except (MilvusException, GalleryError, OSError) as exc:
            self._set_down(f"Milvus at {self.config.uri} is unreachable: {_describe(exc)}")
            return False
        with self._state:
            self._ready = True
        logger.info("connected to Milvus at %s", self.config.uri)
        return True

    def _set_down(self, reason: str) -> None:
        with self._state:
            was_ready, self._ready, self._reason = self._ready, False, reason
        if was_ready:
            logger.warning("gallery unavailable: %s", reason)
        self._wake.set()

    def _reconnect_loop(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._closed.is_set():
            self._wake.wait()
            if self._closed.is_set():
                return
            if self.reason is None:
                self._wake.clear()
                backoff = FIRST_BACKOFF_S
                continue
            try:
                if self._try_connect():
                    continue
            except IndexMismatchError:
                logger.exception("Milvus collection belongs to another model; the gallery stays unavailable")
            self._closed.wait(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_s)

    def call(self, fn: Callable[[MilvusClient, float], T]) -> T:
        """``fn(client, timeout)``; raises ``GalleryUnavailableError`` while disconnected or when the call fails."""
        with self._state:
            client, ready, reason = self._client, self._ready, self._reason
        if self._closed.is_set():
            raise GalleryError(f"gallery at {self.config.uri} is closed")
        if not ready or client is None:
            raise GalleryUnavailableError(reason)
        try:
            return fn(client, self.config.timeout_s)
        except MilvusException as exc:
            reason = f"Milvus at {self.config.uri} failed: {_describe(exc)}"
            self._set_down(reason)
            raise GalleryUnavailableError(reason) from exc

    def close(self) -> None:
        """Stop reconnecting and close the client; further calls fail."""
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._state:
            client, self._client, self._ready = self._client, None, False
        if client is not None:
            client.close()

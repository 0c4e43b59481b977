"""A gallery's background worker: runs the maintenance pass (IVF training, snapshots) off the request path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

RETRY_SECONDS = 30.0  # after a failed pass (a full disk), the next attempt; a new request retries sooner


class BackgroundWorker:
    """One daemon thread that runs ``work()`` whenever requested; a failing pass is logged and retried."""

    def __init__(self, work: Callable[[], None], name: str, retry_seconds: float = RETRY_SECONDS) -> None:
        """``work`` runs on the thread, never concurrently with itself; call ``start()`` to begin."""
        self._work = work
        self._retry_seconds = retry_seconds
        self._cond = threading.Condition(threading.Lock())
        self._requested = 0  # passes asked for (a generation count) ...
        self._completed = 0  # ... and the generation the last finished pass served
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called: a long pass may end early."""
        return self._stopping

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def request(self) -> None:
        """Ask for a pass; returns at once."""
        with self._cond:
            self._requested += 1
            self._cond.notify_all()

    def wait_idle(self) -> None:
        """Ask for a pass and block until one that started after this call has finished (or the worker stopped)."""
        with self._cond:
            self._requested += 1
            target = self._requested
            self._cond.notify_all()
            while self._completed < target and not self._stopping:
                self._cond.wait()

    def stop(self) -> None:
        """Let a running pass finish, run no further one and end the thread (idempotent)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._completed == self._requested and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                target = self._requested
            try:
                self._work()
                failed = False
            except Exception:
                logger.exception(
                    "%s failed; retrying in %.0f s or at the next request", self._thread.name, self._retry_seconds
                )
                failed = True
            with self._cond:
                self._completed = max(self._completed, target)
                self._cond.notify_all()
                if failed:
                    self._cond.wait_for(
                        lambda: self._stopping or self._requested > self._completed, self._retry_seconds
                    )
                    if self._requested == self._completed:
                        self._requested += 1

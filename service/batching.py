"""Dynamic micro-batching: concurrent requests of one modality share one encoder run, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

EncodeFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int, float], None]  # (images in the batch, seconds spent encoding)


class BatcherClosedError(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


class EncoderBusyError(RuntimeError):
    """The encoder cannot take the request now; ``retry_after`` says when to try again (whole seconds)."""

    def __init__(self, message: str, retry_after: int) -> None:
        """Keep the message and the advice."""
        super().__init__(message)
        self.retry_after = retry_after


class OverloadedError(EncoderBusyError):
    """Admitting the request would put more than ``max_queue`` images before the encoder."""


class EncodeTimeoutError(EncoderBusyError):
    """The request waited longer than ``timeout_s`` for the encoder; its queued work was withdrawn."""


@dataclass
class _Job:
    images: np.ndarray
    future: asyncio.Future[np.ndarray] = field(repr=False)

    @property
    def size(self) -> int:
        return int(self.images.shape[0])


class MicroBatcher:
    """Runs ``encode`` in a thread pool; with batching on, groups queued requests into batches.

    A batch closes when it holds ``max_batch`` images or ``max_wait_ms`` has passed since its first request;
    a request larger than ``max_batch`` is split. While one batch runs, new requests queue for the next, so
    the batch size grows with the load even with ``max_wait_ms=0``, which adds no latency to a lone request
    (a 2 ms wait cost a third of the throughput at concurrency 1 and gained nothing at 8 on 2 CPU cores, see
    docs/benchmarks-service.md). With ``batching=False`` every request runs on its own.
    """

    def __init__(
        self,
        encode: EncodeFn,
        *,
        name: str,
        batching: bool = True,
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        workers: int = 1,
        observer: BatchObserver | None = None,
        max_queue: int | None = None,
        timeout_s: float | None = None,
        retry_after_s: int = 1,
    ) -> None:
        """Configure; call ``start()`` inside the event loop before ``embed``.

        ``max_queue`` bounds the images admitted and not yet answered (queued or encoding); a request that
        would pass it is refused at once. ``timeout_s`` bounds each request's wait for its embeddings.
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.name = name
        self.batching = batching
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._encode = encode
        self._workers = workers
        self._observer = observer
        self._max_queue = max_queue
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._pending = 0  # images admitted by embed() and not yet answered
        self._executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._held: list[_Job] = []  # taken from the queue by the collector, not yet resolved
        self._stopping = False
        self._death: str | None = None  # why the collector task ended on its own, if it did

    async def start(self) -> None:
        """Create the thread pool and, with batching on, the collector task."""
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"encode-{self.name}")
        self._stopping, self._death = False, None
        if self.batching:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._collect(), name=f"batcher-{self.name}")
            self._task.add_done_callback(self._collector_done)

    def _collector_done(self, task: asyncio.Task[None]) -> None:
        """Unless ``stop()`` ended it: log why the collector died and fail every queued and future request."""
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        self._death = "it was cancelled" if error is None else f"{type(error).__name__}: {error}"
        logger.error(
            "encoder %s: the batching task died (%s); its requests fail until the service restarts",
            self.name,
            self._death,
            exc_info=error,
        )
        self._fail_waiting(self._closed_error())

    def _closed_error(self) -> BatcherClosedError:
        if self._death is not None:
            return BatcherClosedError(
                f"encoder {self.name} is not running: its batching task died ({self._death}); restart the service"
            )
        return BatcherClosedError(f"encoder {self.name} is not running")

    def _fail_waiting(self, error: BatcherClosedError) -> None:
        """Fail the requests the collector holds and those still queued."""
        orphans, self._held = self._held, []
        if self._queue is not None:
            while not self._queue.empty():
                orphans.append(self._queue.get_nowait())
        for job in orphans:
            if not job.future.done():
                job.future.set_exception(BatcherClosedError(*error.args))

    async def stop(self) -> None:
        """Stop collecting, fail requests still queued, release the threads."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a death was logged when it happened
                await self._task
            self._task = None
        self._fail_waiting(BatcherClosedError(f"encoder {self.name} is shutting down"))
        self._queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed float32 ``(N, 3, H, W)`` images; returns ``(N, D)`` in the same order.

        Raises:
            BatcherClosedError: the batcher is not running.
            OverloadedError: the images would exceed ``max_queue`` (nothing was queued).
            EncodeTimeoutError: no answer within ``timeout_s`` (the request's queued work is withdrawn).
        """
        if self._executor is None or self._death is not None:
            raise self._closed_error()
        count = int(images.shape[0])
        if self._max_queue is not None and self._pending + count > self._max_queue:
            raise OverloadedError(
                f"encoder {self.name} has {self._pending} images waiting; {count} more would pass the limit of "
                f"{self._max_queue} (VIREID_MAX_QUEUE); retry later",
                self._retry_after_s,
            )
        self._pending += count
        try:
            return await asyncio.wait_for(self._embed(images), self._timeout_s)
        except TimeoutError:
            raise EncodeTimeoutError(
                f"encoder {self.name} did not answer within {self._timeout_s} s (VIREID_ENCODE_TIMEOUT_S); retry later",
                self._retry_after_s,
            ) from None
        finally:
            self._pending -= count

    async def _embed(self, images: np.ndarray) -> np.ndarray:
        """Run ``images`` on the encoder, split into batches of at most ``max_batch``."""
        if not self.batching:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed_encode, images)
        chunks = [images[i : i + self.max_batch] for i in range(0, images.shape[0], self.max_batch)]
        parts = await asyncio.gather(*(self._submit(chunk) for chunk in chunks))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _submit(self, images: np.ndarray) -> np.ndarray:
        if self._queue is None or self._death is not None:
            raise self._closed_error()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(images, future))
        return await future

    def _timed_encode(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self._encode(images)
        if self._observer is not None:
            self._observer(int(images.shape[0]), time.perf_counter() - start)
        return out

    async def _collect(self) -> None:
        assert self._queue is not None
        carry: _Job | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            self._held = [first]
            jobs, carry = await self._gather_batch(first)
            await self._run(jobs)
            self._held = [carry] if carry is not None else []

    async def _gather_batch(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """Collect jobs after ``first`` until the batch is full or the wait is over; returns (batch, carry-over)."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        jobs, size = [first], first.size
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            self._held.append(job)
            if size + job.size > self.max_batch:
                return jobs, job
            jobs.append(job)
            size += job.size
        return jobs, None

    async def _run(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # a client that went away cancelled its future
        if not jobs or self._executor is None:
            return
        batch = jobs[0].images if len(jobs) == 1 else np.concatenate([job.images for job in jobs])
        try:
            out = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed_encode, batch)
        except Exception as exc:  # the error belongs to every request of the batch
            logger.exception("encoder %s failed on a batch of %d images", self.name, batch.shape[0])
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(out[start : start + job.size])
            start += job.size

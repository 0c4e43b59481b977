"""Prometheus metrics of one app instance, in their own registry (never the process-global one)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.modality import Modality
from index.base import Gallery
from index.errors import GalleryUnavailableError

logger = logging.getLogger(__name__)

Stage = Literal["decode", "encode", "search", "metadata"]
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Per-stage latency, encoder batch sizes, gallery size per modality and request counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create every metric in ``registry``."""
        self.registry = registry
        self.stage_seconds = Histogram(
            "vireid_stage_seconds",
            "Latency of one processing stage (decode: per request, encode: per encoder batch)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "vireid_encode_batch_size",
            "Images per encoder run (micro-batches group concurrent requests)",
            ["modality"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.gallery_items = Gauge(
            "vireid_gallery_items", "Items in the gallery per modality", ["modality"], registry=registry
        )
        self.gallery_reachable = Gauge(
            "vireid_gallery_reachable",
            "1 when the gallery's store answered the last count, 0 when not",
            registry=registry,
        )
        self.requests = Counter(
            "vireid_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.images = Counter(
            "vireid_images",
            "Images decoded and embedded, by endpoint and modality",
            ["endpoint", "modality"],
            registry=registry,
        )

    @contextmanager
    def time(self, stage: Stage) -> Iterator[None]:
        """Observe the wall time of the ``with`` block as one sample of ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=stage).observe(time.perf_counter() - start)

    def observe_batch(self, modality: Modality, size: int, seconds: float) -> None:
        """Record one encoder run (called from the inference thread)."""
        self.batch_size.labels(modality=modality.value).observe(size)
        self.stage_seconds.labels(stage="encode").observe(seconds)

    def set_gallery_counts(self, counts: Mapping[Modality, int]) -> None:
        """Publish the gallery size per modality."""
        for modality, count in counts.items():
            self.gallery_items.labels(modality=modality.value).set(count)


async def refresh_gallery_gauge(metrics: Metrics, gallery: Gallery) -> dict[Modality, int] | None:
    """Count the gallery per modality (in a worker thread) and publish the counts and whether it answered.

    Returns the counts, or ``None`` when the gallery's store is unreachable (logged, never raised: a write that
    succeeded stays a success when the count after it fails).
    """
    try:
        counts = await run_in_threadpool(gallery.counts)
    except GalleryUnavailableError as exc:
        logger.warning("gallery counts unavailable: %s", exc)
        metrics.gallery_reachable.set(0)
        return None
    metrics.gallery_reachable.set(1)
    metrics.set_gallery_counts(counts)
    return counts


class RequestCounterMiddleware:
    """Counts HTTP requests by method, route template (not raw path: bounded labels) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through and count its response status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(method=scope["method"], route=template, status=str(status)).inc()

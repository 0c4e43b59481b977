"""Uploads to embeddings: decode in a thread pool, encode through the modality's micro-batcher."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from common.modality import Modality
from common.model_card import ModelCard
from service.batching import MicroBatcher
from service.encoder import OnnxEncoder
from service.images import Upload, decode_batch
from service.metrics import Metrics
from service.settings import Settings


class Embedder:
    """Embeds uploaded images of either modality: one micro-batcher per encoder, one shared decode pool."""

    def __init__(
        self,
        cards: Mapping[Modality, ModelCard],
        batchers: Mapping[Modality, MicroBatcher],
        metrics: Metrics,
        decode_workers: int,
        max_image_pixels: int,
        max_request_pixels: int,
    ) -> None:
        """Take started batchers; the decode threads are created here."""
        self._cards = dict(cards)
        self._batchers = dict(batchers)
        self._metrics = metrics
        self._max_image_pixels = max_image_pixels
        self._max_request_pixels = max_request_pixels
        self._decode_pool = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="decode")

    async def embed(self, modality: Modality, uploads: Sequence[Upload], endpoint: str) -> np.ndarray:
        """Decode (thread pool) and embed (micro-batcher) the uploads; returns float32 ``(N, D)``."""
        decode = partial(decode_batch, uploads, self._cards[modality], self._max_image_pixels, self._max_request_pixels)
        with self._metrics.time("decode"):
            batch = await asyncio.get_running_loop().run_in_executor(self._decode_pool, decode)
        embeddings = await self._batchers[modality].embed(batch)
        self._metrics.images.labels(endpoint=endpoint, modality=modality.value).inc(len(uploads))
        return embeddings

    async def close(self) -> None:
        """Stop the batchers (failing queued requests) and release the decode threads."""
        for batcher in self._batchers.values():
            await batcher.stop()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)


async def start_embedder(encoders: Mapping[Modality, OnnxEncoder], settings: Settings, metrics: Metrics) -> Embedder:
    """Start one micro-batcher per encoder, configured by ``settings``, and wrap them in an ``Embedder``."""
    batchers = {
        m: MicroBatcher(
            encoder.embed,
            name=m.value,
            batching=settings.batching,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            workers=settings.inference_workers,
            observer=partial(metrics.observe_batch, m),
            max_queue=settings.max_queue,
            timeout_s=settings.encode_timeout_s,
            retry_after_s=settings.retry_after_s,
        )
        for m, encoder in encoders.items()
    }
    for batcher in batchers.values():
        await batcher.start()
    cards = {m: encoder.card for m, encoder in encoders.items()}
    return Embedder(
        cards, batchers, metrics, settings.decode_workers, settings.max_image_pixels, settings.max_request_pixels
    )

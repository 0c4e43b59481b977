"""What the lifespan loads: encoders, micro-batchers and the gallery, with the operations routes share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from starlette.concurrency import run_in_threadpool

from common.modality import Modality
from index.base import Gallery
from index.gallery import FaissGallery
from service.batching import MicroBatcher
from service.encoder import OnnxEncoder, load_encoders
from service.images import Upload, decode_batch
from service.metrics import Metrics
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The loaded service: one encoder and batcher per modality, one gallery, shared thread pools."""

    settings: Settings
    metrics: Metrics
    encoders: dict[Modality, OnnxEncoder]
    batchers: dict[Modality, MicroBatcher]
    gallery: Gallery
    decode_pool: ThreadPoolExecutor

    @property
    def model_version(self) -> str:
        """Version shared by both encoders (checked at load)."""
        return self.encoders[Modality.VISIBLE].card.model_version

    @property
    def embedding_dim(self) -> int:
        """Embedding dimension shared by both encoders (checked at load)."""
        return self.encoders[Modality.VISIBLE].card.embedding_dim

    async def embed_uploads(self, modality: Modality, uploads: Sequence[Upload], endpoint: str) -> np.ndarray:
        """Decode (thread pool) and embed (micro-batcher) the uploads; returns float32 ``(N, D)``."""
        card = self.encoders[modality].card
        loop = asyncio.get_running_loop()
        with self.metrics.time("decode"):
            batch = await loop.run_in_executor(
                self.decode_pool, partial(decode_batch, uploads, card, self.settings.max_image_pixels)
            )
        embeddings = await self.batchers[modality].embed(batch)
        self.metrics.images.labels(endpoint=endpoint, modality=modality.value).inc(len(uploads))
        return embeddings

    async def refresh_gallery_gauge(self) -> None:
        """Publish the gallery size per modality."""
        self.metrics.set_gallery_counts(await run_in_threadpool(self.gallery.counts))

    async def close(self) -> None:
        """Stop the batchers, close the gallery, release the decode threads."""
        for batcher in self.batchers.values():
            await batcher.stop()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        await run_in_threadpool(self.gallery.close)


async def open_runtime(settings: Settings, metrics: Metrics) -> Runtime:
    """Load encoders (refusing a mismatched pair), open the gallery for their model, start the batchers.

    Raises:
        EncoderLoadError: encoders missing, unreadable or mismatched.
        IndexMismatchError: the gallery on disk belongs to another model version or dimension.
    """
    encoders = await run_in_threadpool(
        load_encoders, settings.model_dir, settings.providers, settings.intra_op_threads, settings.intra_op_spinning
    )
    card = encoders[Modality.VISIBLE].card
    gallery = await run_in_threadpool(
        FaissGallery.open, settings.data_dir, card.embedding_dim, card.model_version, card.git_sha, settings.index
    )
    batchers = {
        m: MicroBatcher(
            encoders[m].embed,
            name=m.value,
            batching=settings.batching,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            workers=settings.inference_workers,
            observer=partial(metrics.observe_batch, m),
        )
        for m in Modality
    }
    for batcher in batchers.values():
        await batcher.start()
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        encoders=encoders,
        batchers=batchers,
        gallery=gallery,
        decode_pool=ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode"),
    )
    await runtime.refresh_gallery_gauge()
    logger.info(
        "service ready: model %s (dim %d), providers %s, gallery %s at %s",
        runtime.model_version,
        runtime.embedding_dim,
        {m.value: e.providers for m, e in encoders.items()},
        {m.value: n for m, n in gallery.counts().items()},
        settings.data_dir,
    )
    return runtime

"""What the lifespan loads: the encoders, the embedder built on them, the gallery, and the model they share.

Routes never take the ``Runtime`` itself: ``service.deps`` hands each one the pieces it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from common.modality import Modality
from index.base import Gallery
from index.factory import open_gallery
from index.milvus.config import MilvusConfig
from service.embedder import Embedder, start_embedder
from service.encoder import OnnxEncoder, load_encoders
from service.metrics import Metrics, refresh_gallery_gauge
from service.same_person import SamePerson
from service.settings import Settings
from service.tensorrt import TensorrtOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelIdentity:
    """The model both encoders and the gallery belong to (checked at load)."""

    model_version: str
    embedding_dim: int
    same_person: SamePerson | None = None  # the card's score calibration at VIREID_SAME_PERSON_FAR
    precision: str = "fp32"


@dataclass(frozen=True)
class Runtime:
    """The loaded service: one encoder per modality, the embedder running them, the gallery, their model."""

    encoders: dict[Modality, OnnxEncoder]
    embedder: Embedder
    gallery: Gallery
    model: ModelIdentity

    async def close(self) -> None:
        """Stop the embedder, then close the gallery."""
        await self.embedder.close()
        await run_in_threadpool(self.gallery.close)


async def open_runtime(settings: Settings, metrics: Metrics) -> Runtime:
    """Load encoders (refusing a mismatched pair), open the gallery for their model, start the embedder.

    Raises:
        EncoderLoadError: encoders missing, unreadable or mismatched.
        IndexMismatchError: the gallery on disk belongs to another model version or dimension.
    """
    tensorrt = TensorrtOptions(
        settings.trt_cache_dir, settings.trt_fp16, settings.trt_int8, settings.trt_max_workspace_bytes
    )
    encoders = await run_in_threadpool(
        load_encoders,
        settings.model_dir,
        settings.providers,
        settings.intra_op_threads,
        settings.intra_op_spinning,
        tensorrt,
    )
    card = encoders[Modality.VISIBLE].card
    gallery = await run_in_threadpool(
        open_gallery, settings.index, settings.data_dir, card.embedding_dim, card.model_version, card.git_sha
    )
    runtime = Runtime(
        encoders=encoders,
        embedder=await start_embedder(encoders, settings, metrics),
        gallery=gallery,
        model=ModelIdentity(
            model_version=card.model_version,
            embedding_dim=card.embedding_dim,
            same_person=SamePerson.from_cards({m: e.card for m, e in encoders.items()}, settings.same_person_far),
            precision=card.precision,
        ),
    )
    counts = await refresh_gallery_gauge(metrics, gallery)
    logger.info(
        "service ready: model %s (dim %d, %s), providers %s, gallery %s at %s",
        runtime.model.model_version,
        runtime.model.embedding_dim,
        runtime.model.precision,
        {m.value: e.providers for m, e in encoders.items()},
        {m.value: n for m, n in counts.items()} if counts is not None else "unavailable",
        settings.index.uri if isinstance(settings.index, MilvusConfig) else settings.data_dir,
    )
    return runtime

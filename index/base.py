"""The gallery interface the service depends on; FAISS is one backend, a vector database may be another."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from common.modality import Modality


@dataclass(frozen=True)
class NewItem:
    """An embedding to add, with its metadata. ``embedding`` is float32 ``(dim,)``, L2-normalised."""

    embedding: np.ndarray
    modality: Modality
    label: str | None = None
    camera: str | None = None
    captured_at: str | None = None  # ISO 8601 time the image was taken
    source: str | None = None  # e.g. the uploaded file name
    sha256: str | None = None  # of the image bytes
    extra: dict[str, Any] = field(default_factory=dict)  # free JSON
    thumbnail: bytes | None = None  # a small JPEG of the crop, kept with the item and removed with it


@dataclass(frozen=True)
class GalleryItem:
    """A stored gallery entry (no vector)."""

    id: int
    modality: Modality
    label: str | None
    camera: str | None
    captured_at: str | None
    source: str | None
    sha256: str | None
    extra: dict[str, Any]
    added_at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class Match:
    """A search hit: inner product of normalised embeddings (larger = closer)."""

    item: GalleryItem
    score: float


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search; ``modality=None`` searches every modality."""

    modality: Modality | None = None
    label: str | None = None
    camera: str | None = None
    min_score: float | None = None


class Gallery(Protocol):
    """A persistent gallery of embeddings. Searches may run concurrently; writes are serialised and atomic."""

    @property
    def embedding_dim(self) -> int:
        """Dimension of stored embeddings."""
        ...

    @property
    def model_version(self) -> str:
        """Version of the model whose embeddings the gallery holds."""
        ...

    def add(self, items: Sequence[NewItem]) -> builtins.list[int]:
        """Add all items or none; returns their new ids in order; durable on return."""
        ...

    def get(self, item_id: int) -> GalleryItem:
        """One item; raises ``ItemNotFoundError``."""
        ...

    def list(self, offset: int = 0, limit: int = 100, modality: Modality | None = None) -> builtins.list[GalleryItem]:
        """Items in id order, paged."""
        ...

    def counts(self) -> dict[Modality, int]:
        """Number of items per modality (every modality present as a key)."""
        ...

    def vectors(self, item_ids: Sequence[int]) -> np.ndarray:
        """Stored float32 embeddings ``(n, dim)`` of the given ids, in their order; raises ``ItemNotFoundError``."""
        ...

    def thumbnail(self, item_id: int) -> bytes | None:
        """The item's JPEG thumbnail, ``None`` if it was added without one; raises ``ItemNotFoundError``."""
        ...

    def delete(self, item_id: int) -> None:
        """Remove one item (vector and metadata); raises ``ItemNotFoundError``; durable on return."""
        ...

    def search(
        self, queries: np.ndarray, top_k: int, where: SearchFilter | None = None
    ) -> builtins.list[builtins.list[Match]]:
        """Top-k matches for each query row of float32 ``(n, dim)``, best first."""
        ...

    def close(self) -> None:
        """Release resources; further calls fail."""
        ...

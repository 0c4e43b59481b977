"""The one place a backend is chosen: FAISS (``kind`` exact or ivf, the default) or Milvus (``kind`` milvus)."""

from __future__ import annotations

from pathlib import Path

from index.base import Gallery
from index.config import IndexConfig
from index.gallery import FaissGallery
from index.milvus.config import MilvusConfig

AnyIndexConfig = IndexConfig | MilvusConfig


def open_gallery(
    config: AnyIndexConfig, data_dir: Path, embedding_dim: int, model_version: str, git_sha: str = "unknown"
) -> Gallery:
    """Open the configured gallery: FAISS + SQLite in ``data_dir``, or a Milvus collection (``data_dir`` unused).

    Raises:
        IndexMismatchError: the stored gallery belongs to another model version or embedding dimension.
    """
    if isinstance(config, MilvusConfig):
        from index.milvus.gallery import MilvusGallery  # pymilvus only where Milvus is configured

        return MilvusGallery.open(config, embedding_dim, model_version, git_sha)
    return FaissGallery.open(data_dir, embedding_dim, model_version, git_sha, config)


def unavailable_reason(gallery: Gallery) -> str | None:
    """Why the gallery cannot serve now (its store is unreachable), ``None`` when it can (always, for FAISS)."""
    reason: str | None = getattr(gallery, "unavailable_reason", None)
    return reason

"""A FAISS gallery directory: the files it holds, and what ``open`` checks or creates there before loading.

``manifest.json`` (format, embedding_dim, model_version, git_sha, index config), ``metadata.sqlite`` (items, their
vectors in ``config.vector_dtype``, the id counter), ``faiss_vis.index`` / ``faiss_ir.index`` (snapshots) and,
while a process has the gallery open, ``gallery.lock`` (``index/dirlock.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.fsio import TEMP_SUFFIX, remove_stale_temps
from common.modality import Modality
from index.config import IndexConfig
from index.dirlock import LOCK_NAME
from index.errors import GalleryCorruptError
from index.manifest import MANIFEST_NAME, Manifest
from index.metadata import SQLITE_NAME

logger = logging.getLogger(__name__)

# What creating a gallery leaves before its manifest exists: such a folder is still new, not someone else's.
_NEW_GALLERY_LEFTOVERS = frozenset({MANIFEST_NAME + TEMP_SUFFIX, LOCK_NAME})


def index_filename(modality: Modality) -> str:
    """File name of one modality's FAISS snapshot inside a gallery directory."""
    return f"faiss_{modality.value}.index"


def refuse_foreign_folder(directory: Path) -> None:
    """Refuse a folder that is neither a gallery nor new (absent, empty, or holding only a new gallery's leftovers).

    Raises:
        GalleryCorruptError: ``directory`` has other files but no manifest; nothing in it was touched.
    """
    if (directory / MANIFEST_NAME).exists() or not directory.exists():
        return
    foreign = sorted(p.name for p in directory.iterdir() if p.name not in _NEW_GALLERY_LEFTOVERS)
    if foreign:
        raise GalleryCorruptError(
            f"{directory} is not empty but has no {MANIFEST_NAME} (it holds {foreign[:5]}), so it is not a gallery "
            "and was left untouched; point the data dir at a gallery, an empty folder or a new path"
        )


def prepare_locked(
    directory: Path, embedding_dim: int, model_version: str, git_sha: str, config: IndexConfig
) -> Manifest:
    """Once this process holds ``directory``: drop an interrupted save's temp files, then check the gallery's
    manifest, or write a new gallery's; returns the manifest.

    Raises:
        IndexMismatchError: the manifest names another embedding dimension, model version or format.
        GalleryCorruptError: the directory is not a gallery, or its index files are there without its database.
    """
    for stale in remove_stale_temps(directory):
        logger.warning("removed %s left by an interrupted save", stale)
    if (directory / MANIFEST_NAME).exists():
        manifest = Manifest.read(directory)
        manifest.check(directory, embedding_dim, model_version)
        if not (directory / SQLITE_NAME).exists() and any((directory / index_filename(m)).exists() for m in Modality):
            raise GalleryCorruptError(f"{directory / SQLITE_NAME} is missing; the index files alone are not a gallery")
        return manifest
    refuse_foreign_folder(directory)
    manifest = Manifest(
        embedding_dim=embedding_dim, model_version=model_version, git_sha=git_sha, index=config.model_dump()
    )
    manifest.write(directory)
    logger.info("created gallery %s (dim %d, model %s)", directory, embedding_dim, model_version)
    return manifest

"""Copy an embedded (FAISS + SQLite) gallery into a Milvus collection, keeping every id, and check the copy.

The copy is an upsert per batch, so a re-run (after an interruption, or on purpose) rewrites what is there and
never duplicates it. The check compares counts per modality and a seeded sample of searches: each sampled item's
own vector must find that item on the target, and the top-k of source and target are compared (equal up to ties
for a FLAT target; the overlap measures an approximate index).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.modality import Modality
from index.base import GalleryItem, NewItem
from index.errors import GalleryError
from index.gallery import FaissGallery
from index.manifest import Manifest
from index.milvus.config import MilvusConfig
from index.milvus.gallery import NEW_ID_BASE, MilvusGallery


class MigrationCheckError(GalleryError):
    """The copy does not match its source (counts or sample searches)."""


@dataclass(frozen=True)
class MigrationReport:
    """What the check after a copy found."""

    source_counts: dict[Modality, int]
    target_counts: dict[Modality, int]
    samples: int
    self_found: int  # sampled items whose own vector found them on the target
    overlap: float  # mean fraction of the source's top-k the target returned too


def open_pair(data_dir: Path, config: MilvusConfig) -> tuple[FaissGallery, MilvusGallery]:
    """The source gallery (its manifest names the model) and the target collection for the same model.

    Raises:
        GalleryError: the source is no gallery, or the target is unreachable or holds another model.
    """
    manifest = Manifest.read(data_dir)
    source = FaissGallery.open(data_dir, manifest.embedding_dim, manifest.model_version, manifest.git_sha)
    try:
        target = MilvusGallery.open(config, manifest.embedding_dim, manifest.model_version, manifest.git_sha)
    except BaseException:
        source.close()
        raise
    if target.unavailable_reason is not None:
        source.close()
        target.close()
        raise GalleryError(target.unavailable_reason)
    return source, target


def _new_item(source: FaissGallery, item: GalleryItem, vector: np.ndarray) -> NewItem:
    return NewItem(
        embedding=vector,
        modality=item.modality,
        label=item.label,
        camera=item.camera,
        captured_at=item.captured_at,
        source=item.source,
        sha256=item.sha256,
        extra=item.extra,
        thumbnail=source.thumbnail(item.id),
    )


def copy_batches(source: FaissGallery, target: MilvusGallery, batch: int = 1000) -> Iterator[int]:
    """Copy every item (id, metadata, thumbnail, vector) in id order; yields the number copied by each batch."""
    offset = 0
    while page := source.list(offset, batch):
        ids = [item.id for item in page]
        if ids[-1] >= NEW_ID_BASE:
            raise GalleryError(f"source id {ids[-1]} is at or above {NEW_ID_BASE}, where the target's new ids begin")
        vectors = source.vectors(ids)
        items = [_new_item(source, item, v) for item, v in zip(page, vectors, strict=True)]
        target.put(ids, items, vectors, [item.added_at for item in page])
        offset += len(page)
        yield len(page)
    target.seal_and_index()


def check_copy(
    source: FaissGallery, target: MilvusGallery, samples: int = 20, k: int = 10, seed: int = 0
) -> MigrationReport:
    """Compare counts and ``samples`` seeded searches of source and target.

    Raises:
        MigrationCheckError: the counts differ, or a sampled item's own vector does not find it on the target.
    """
    source_counts, target_counts = source.counts(), target.counts()
    if source_counts != target_counts:
        raise MigrationCheckError(
            f"counts differ: source {_named(source_counts)}, target {_named(target_counts)}; "
            "the target collection holds other items, or the copy was interrupted (re-run it)"
        )
    total = sum(source_counts.values())
    rows = np.random.default_rng(seed).choice(total, size=min(samples, total), replace=False)
    ids = [source.list(int(r), 1)[0].id for r in np.sort(rows)]
    if not ids:
        return MigrationReport(source_counts, target_counts, 0, 0, 1.0)
    queries = source.vectors(ids)
    expected, got = source.search(queries, k), target.search(queries, k)
    found = sum(i in {m.item.id for m in row} for i, row in zip(ids, got, strict=True))
    overlap = float(
        np.mean(
            [
                len({m.item.id for m in e} & {m.item.id for m in g}) / max(1, len(e))
                for e, g in zip(expected, got, strict=True)
            ]
        )
    )
    if found != len(ids):
        raise MigrationCheckError(f"only {found} of {len(ids)} sampled items found themselves on the target")
    return MigrationReport(source_counts, target_counts, len(ids), found, overlap)


def _named(counts: dict[Modality, int]) -> dict[str, int]:
    return {m.value: n for m, n in counts.items()}

"""Filtered top-k over a FAISS gallery's per-modality indexes; the gallery runs it under its shared lock.

Exactly the ``top_k`` best matching items when enough match (exact index), filtered by modality (one index each),
label and camera (a FAISS id selector, or exact scoring of the stored vectors when at most ``filter_exact_limit``
items match) and then ``min_score``. An IVF index's candidates are re-scored exactly from the stored vectors unless
``config.rerank`` is 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from common.modality import Modality
from index import vector_index as vi
from index.base import GalleryItem, Match, SearchFilter
from index.config import IndexConfig
from index.metadata import MetadataStore


def top_k_ids(
    indexes: Mapping[Modality, vi.FaissIndex],
    store: MetadataStore,
    config: IndexConfig,
    queries: np.ndarray,
    top_k: int,
    where: SearchFilter,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores, ids) of the ``top_k`` best items per query row matching ``where`` (``min_score`` aside), best first,
    padded with ``-inf``/``-1``; ``None`` when the label/camera filter leaves no item in any searched modality."""
    modalities = [Modality(where.modality)] if where.modality is not None else list(Modality)
    filtered = where.label is not None or where.camera is not None
    results = []
    for modality in modalities:
        index = indexes[modality]
        among = store.ids(modality, where.label, where.camera) if filtered else None
        if among is not None and len(among) <= config.filter_exact_limit:
            found, vectors = store.vectors(among)
            results.append(vi.exact_top_k(queries, vectors, found, top_k))
        elif among is None or len(among):
            results.append(_search_index(index, store, config, queries, top_k, among))
    if not results:
        return None
    return vi.merge_top_k(results, top_k)


def _search_index(
    index: vi.FaissIndex,
    store: MetadataStore,
    config: IndexConfig,
    queries: np.ndarray,
    top_k: int,
    among: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one modality's index; an IVF index's ``top_k * rerank`` candidates re-scored exactly."""
    if not vi.is_ivf(index) or config.rerank == 1:
        return vi.search(index, queries, top_k, config.nprobe, among)
    _, candidates = vi.search(index, queries, top_k * config.rerank, config.nprobe, among)
    found, vectors = store.vectors(np.unique(candidates[candidates >= 0]))
    return vi.rerank_exact(queries, candidates, found, vectors, top_k)


def to_matches(
    scores: np.ndarray, ids: np.ndarray, items: Mapping[int, GalleryItem], min_score: float | None
) -> list[list[Match]]:
    """Each query row's hits as matches, best first: padding, ids absent from ``items`` and scores under
    ``min_score`` left out."""
    floor = -np.inf if min_score is None else min_score
    return [
        [
            Match(item=items[int(i)], score=float(s))
            for s, i in zip(row_scores, row_ids, strict=True)
            if i >= 0 and s >= floor and int(i) in items
        ]
        for row_scores, row_ids in zip(scores, ids, strict=True)
    ]

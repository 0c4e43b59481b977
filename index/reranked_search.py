"""A gallery search re-ranked by k-reciprocal encoding (``index.kreciprocal``) over a bounded candidate set.

The candidate set is the query's ``candidates`` best matches plus the ``k1`` nearest gallery neighbours of each
(``Gallery.search`` with the candidates' stored vectors, under the same filter), so the work grows with the
candidate depth and ``k1``, not with the gallery. The matches keep their original score (the inner product with
the query, from the stored vectors) and carry the re-ranked distance; they are ordered by that distance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from index.base import Gallery, GalleryItem, Match, SearchFilter
from index.errors import ItemNotFoundError
from index.kreciprocal import KReciprocalParams, rerank_probe

ATTEMPTS = 3  # a deletion between the candidate search and reading the vectors restarts the search


@dataclass(frozen=True)
class RerankedMatch:
    """A re-ranked hit: the gallery match (original score) and its k-reciprocal distance (smaller = closer)."""

    match: Match
    distance: float


def reranked_search(
    gallery: Gallery,
    query: np.ndarray,
    top_k: int,
    where: SearchFilter | None = None,
    params: KReciprocalParams | None = None,
    candidates: int = 100,
) -> list[RerankedMatch]:
    """The ``top_k`` best of one query ``(1, dim)`` by k-reciprocal distance; ``where.min_score`` on the score.

    Raises:
        ItemNotFoundError: deletions kept racing the search ``ATTEMPTS`` times.
    """
    p = params or KReciprocalParams()
    for attempt in range(ATTEMPTS):
        try:
            return _once(gallery, query, top_k, where or SearchFilter(), p, max(candidates, top_k))
        except ItemNotFoundError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _once(
    gallery: Gallery, query: np.ndarray, top_k: int, where: SearchFilter, params: KReciprocalParams, depth: int
) -> list[RerankedMatch]:
    """One attempt of ``reranked_search`` (raises ``ItemNotFoundError`` if an item went meanwhile)."""
    unbounded = replace(where, min_score=None)  # neighbours are gallery structure, not answers
    top = gallery.search(query, depth, unbounded)[0]
    if not top:
        return []
    items: dict[int, GalleryItem] = {m.item.id: m.item for m in top}
    for row in gallery.search(gallery.vectors(list(items)), params.k1 + 1, unbounded):
        for m in row:
            items.setdefault(m.item.id, m.item)
    ids = list(items)
    vectors = gallery.vectors(ids)
    distances = rerank_probe(query[0], vectors, params)
    scores = vectors @ query[0]
    min_score = -np.inf if where.min_score is None else where.min_score
    out = []
    for row in np.argsort(distances, kind="stable"):
        if scores[row] >= min_score:
            match = Match(item=items[ids[row]], score=float(scores[row]))
            out.append(RerankedMatch(match=match, distance=float(distances[row])))
            if len(out) == top_k:
                break
    return out

"""k-reciprocal re-ranking over a real FAISS gallery: the bounded candidate set, filters, scores."""

from __future__ import annotations

import numpy as np

from common.modality import Modality
from index.base import NewItem, SearchFilter
from index.gallery import FaissGallery
from index.kreciprocal import KReciprocalParams, candidate_set, rerank_probe, top_rows
from index.reranked_search import reranked_search
from tests.index.conftest import OpenGallery, clustered

PARAMS = KReciprocalParams(k1=4, k2=2, lam=0.3)


def filled(open_gallery: OpenGallery, vectors: np.ndarray) -> tuple[FaissGallery, np.ndarray]:
    """A gallery of visible items, one per row, labelled by identity (5 views each); their ids."""
    gallery = open_gallery()
    items = [NewItem(embedding=v, modality=Modality.VISIBLE, label=f"p{i // 5}") for i, v in enumerate(vectors)]
    return gallery, np.asarray(gallery.add(items))


def test_bounded_search_reranks_the_top_candidates_and_their_neighbours(open_gallery: OpenGallery) -> None:
    vectors = clustered(12, 5, 16, noise=0.9, seed=1)
    gallery, ids = filled(open_gallery, vectors)
    query = clustered(12, 5, 16, noise=0.9, seed=2)[:1]
    found = reranked_search(gallery, query, top_k=8, params=PARAMS, candidates=10)
    # the same by hand: top 10 rows, their k1 + 1 nearest rows, re-ranked by the dense transcription
    top = top_rows((vectors @ query[0])[None], 10)[0]
    members = candidate_set(top, top_rows(vectors[top] @ vectors.T, PARAMS.k1 + 1))
    dist = rerank_probe(query[0], vectors[members], PARAMS)
    want = members[np.argsort(dist, kind="stable")][:8]
    assert [r.match.item.id for r in found] == ids[want].tolist()
    assert len(members) < len(vectors)
    np.testing.assert_allclose([r.distance for r in found], np.sort(dist)[:8], atol=1e-6)
    np.testing.assert_allclose([r.match.score for r in found], vectors[want] @ query[0], atol=1e-6)


def test_filters_hold_and_min_score_applies_to_the_original_score(open_gallery: OpenGallery) -> None:
    vectors = clustered(8, 5, 16, noise=0.9, seed=3)
    gallery, ids = filled(open_gallery, vectors)
    query = vectors[:1]
    labelled = reranked_search(gallery, query, 50, SearchFilter(label="p1"), PARAMS)
    assert sorted(r.match.item.id for r in labelled) == ids[5:10].tolist()
    floor = float(np.sort(vectors @ query[0])[-10])
    high = reranked_search(gallery, query, 50, SearchFilter(min_score=floor), PARAMS)
    assert len(high) == 10 and min(r.match.score for r in high) >= floor - 1e-6
    assert reranked_search(gallery, query, 5, SearchFilter(modality=Modality.INFRARED)) == []

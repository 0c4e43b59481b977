"""Tracklet queries (several `file` parts fused) and k-reciprocal re-ranking through the real app."""

from __future__ import annotations

import numpy as np
import pytest

from index.fusion import fuse_embeddings
from index.kreciprocal import KReciprocalParams, rerank_probe
from service.settings import Settings
from tests.service.support import files, image_bytes, serve, with_settings

pytestmark = pytest.mark.anyio

GALLERY_SEEDS = range(40, 64)


async def test_a_tracklet_query_ranks_by_its_fused_embedding(settings: Settings) -> None:
    crops = [image_bytes(s, size=(20 + 4 * s % 12, 50)) for s in (1, 2, 3)]
    gallery = [image_bytes(s) for s in GALLERY_SEEDS]
    async with serve(settings) as (_, client):
        ids = (await client.post("/gallery", params={"modality": "vis"}, files=files(*gallery))).json()["ids"]
        embed = await client.post("/embed", params={"modality": "vis"}, files=files(*gallery))
        vectors = np.asarray(embed.json()["embeddings"], dtype=np.float32)
        crop_embeddings = (await client.post("/embed", params={"modality": "ir"}, files=files(*crops))).json()
        r = await client.post("/search", params={"modality": "ir", "top_k": 24}, files=files(*crops, field="file"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["query_images"], body["reranked"]) == (3, False)
    fused = fuse_embeddings(np.asarray(crop_embeddings["embeddings"]))[0]
    scores = vectors @ fused
    order = np.argsort(-scores, kind="stable")
    assert [m["id"] for m in body["matches"]] == [ids[i] for i in order]
    np.testing.assert_allclose([m["score"] for m in body["matches"]], scores[order], atol=1e-4)
    assert all(m["rerank_distance"] is None for m in body["matches"])
    one = np.asarray(crop_embeddings["embeddings"][0]) @ vectors.T
    assert not np.allclose(one, scores, atol=1e-3)  # the fused query is not just its first image


async def test_more_query_images_than_the_limit_are_refused(settings: Settings) -> None:
    async with serve(with_settings(settings, max_files_per_request=2)) as (_, client):
        crops = files(*(image_bytes(s) for s in (1, 2, 3)), field="file")
        r = await client.post("/search", params={"modality": "ir"}, files=crops)
    assert (r.status_code, r.json()["error"]) == (400, "too_many_files"), r.text
    assert "VIREID_MAX_FILES_PER_REQUEST" in r.json()["detail"]


async def test_rerank_orders_by_the_k_reciprocal_distance_and_keeps_the_scores(settings: Settings) -> None:
    gallery = [image_bytes(s) for s in GALLERY_SEEDS]
    tuned = with_settings(settings, rerank_k1=5, rerank_k2=3, rerank_lambda=0.4, rerank_candidates=30)
    async with serve(tuned) as (_, client):
        ids = (await client.post("/gallery", params={"modality": "vis"}, files=files(*gallery))).json()["ids"]
        embed = await client.post("/embed", params={"modality": "vis"}, files=files(*gallery, image_bytes(7)))
        vectors = np.asarray(embed.json()["embeddings"], dtype=np.float32)
        query = vectors[-1].tolist()
        params = {"modality": "ir", "top_k": 10, "rerank": "true"}
        r = await client.post("/search", params=params, json={"embedding": query})
        plain = await client.post("/search", params={**params, "rerank": "false"}, json={"embedding": query})
        by_image = await client.post(
            "/search", params=params, files=files(image_bytes(7), image_bytes(8), field="file")
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["reranked"], body["query_images"], plain.json()["reranked"]) == (True, 1, False)
    # 30 candidates cover the 24 items: the re-ranking is the paper's over the whole gallery
    dist = rerank_probe(vectors[-1], vectors[:-1], KReciprocalParams(k1=5, k2=3, lam=0.4))
    order = np.argsort(dist, kind="stable")[:10]
    assert [m["id"] for m in body["matches"]] == [ids[i] for i in order]
    np.testing.assert_allclose([m["rerank_distance"] for m in body["matches"]], dist[order], atol=1e-5)
    np.testing.assert_allclose([m["score"] for m in body["matches"]], vectors[order] @ vectors[-1], atol=1e-4)
    assert [m["id"] for m in body["matches"]] != [m["id"] for m in plain.json()["matches"]]
    assert by_image.status_code == 200, by_image.text
    assert (by_image.json()["reranked"], by_image.json()["query_images"]) == (True, 2)

"""The real app in process (lifespan run, httpx.ASGITransport) on real ONNX files and a real FAISS gallery."""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.modality import Modality
from common.model_card import encoder_filename
from common.preprocess import decode_image, to_input
from index.errors import GalleryLockedError, IndexMismatchError
from service.settings import Settings
from tests.service.conftest import TinyModels
from tests.service.support import files, image_bytes, serve, set_card, with_settings

pytestmark = pytest.mark.anyio


def torch_embedding(tiny_models: TinyModels, modality: Modality, data: bytes) -> np.ndarray:
    """The reference: PyTorch on the same decoded, resized image."""
    card = tiny_models.cards[modality]
    x = torch.from_numpy(to_input(decode_image(data), card.input_height, card.input_width))[None]
    with torch.no_grad():
        return tiny_models.nets[modality](x).numpy()[0]


@pytest.mark.parametrize("alias", ["infrared", "vis"])
async def test_embed_equals_torch(settings: Settings, tiny_models: TinyModels, alias: str) -> None:
    payloads = [image_bytes(1), image_bytes(2, size=(40, 90), mode="L", fmt="JPEG"), image_bytes(3, fmt="BMP")]
    async with serve(settings) as (_, client):
        r = await client.post("/embed", params={"modality": alias}, files=files(*payloads))
    assert r.status_code == 200, r.text
    body = r.json()
    modality = Modality.parse(alias)
    assert (body["modality"], body["dim"], body["model_version"]) == (
        modality.value,
        tiny_models.card.embedding_dim,
        tiny_models.card.model_version,
    )
    expected = np.stack([torch_embedding(tiny_models, modality, p) for p in payloads])
    np.testing.assert_allclose(np.asarray(body["embeddings"]), expected, atol=1e-4)


async def test_embed_applies_exif_orientation(settings: Settings, tiny_models: TinyModels) -> None:
    upright = Image.open(io.BytesIO(image_bytes(4, size=(24, 48))))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, with Orientation=6 in EXIF
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif)
    async with serve(settings) as (_, client):
        r = await client.post("/embed", params={"modality": "vis"}, files=files(buf.getvalue()))
    upright_png = io.BytesIO()
    upright.save(upright_png, format="PNG")
    expected = torch_embedding(tiny_models, Modality.VISIBLE, upright_png.getvalue())
    np.testing.assert_allclose(np.asarray(r.json()["embeddings"][0]), expected, atol=1e-4)


async def test_add_get_delete_survive_restart(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        r = await client.post(
            "/gallery",
            params={"modality": "vis"},
            files=files(image_bytes(10), image_bytes(11)),
            data={"camera": "cam1", "metadata": '[{"label": "0001"}, {"label": "0002", "extra": {"k": 1}}]'},
        )
        assert r.status_code == 201, r.text
        first, second = r.json()["ids"]
        r = await client.post(
            "/gallery", params={"modality": "ir"}, files=files(image_bytes(12)), data={"label": "0001"}
        )
        (third,) = r.json()["ids"]
        assert (await client.delete(f"/gallery/{second}")).status_code == 204
    async with serve(settings) as (_, client):  # a new app on the same data directory
        page = (await client.get("/gallery")).json()
        assert [i["id"] for i in page["items"]] == [first, third]
        assert page["counts"] == {"vis": 1, "ir": 1} and page["total"] == 2
        item = (await client.get(f"/gallery/{first}")).json()
        assert (item["label"], item["camera"], item["source"], item["modality"]) == ("0001", "cam1", "img0.png", "vis")
        assert (await client.get(f"/gallery/{second}")).status_code == 404
        only_ir = (await client.get("/gallery", params={"modality": "infrared"})).json()
        assert [i["id"] for i in only_ir["items"]] == [third] and only_ir["total"] == 1


async def test_search_finds_the_same_image_in_the_other_modality_first(settings: Settings) -> None:
    gallery = [image_bytes(s) for s in range(20, 26)]
    async with serve(settings) as (_, client):
        r = await client.post("/gallery", params={"modality": "ir"}, files=files(*gallery))
        ids = r.json()["ids"]
        await client.post("/gallery", params={"modality": "vis"}, files=files(gallery[3]))  # same modality: skipped
        # the query's modality is vis, so by default the ir items are searched; the ir encoder made the
        # gallery, so query by embedding computed with the ir encoder to get an exact match
        emb = (await client.post("/embed", params={"modality": "ir"}, files=files(gallery[3]))).json()["embeddings"][0]
        r = await client.post("/search", params={"modality": "vis", "top_k": 3}, json={"embedding": emb})
        body = r.json()
        assert r.status_code == 200, r.text
        assert body["target_modality"] == "ir" and body["query_modality"] == "vis"
        assert [m["id"] for m in body["matches"]][0] == ids[3]
        assert body["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert len(body["matches"]) == 3
        scores = [m["score"] for m in body["matches"]]
        assert scores == sorted(scores, reverse=True)
        # an image query searches the other modality: the ir items
        r = await client.post("/search", params={"modality": "vis", "top_k": 10}, files=files(gallery[0], field="file"))
        assert {m["metadata"]["modality"] for m in r.json()["matches"]} == {"ir"}
        assert sorted(m["id"] for m in r.json()["matches"]) == ids
        # every modality, with a score floor
        r = await client.post(
            "/search", params={"modality": "ir", "target": "any", "min_score": 0.999}, json={"embedding": emb}
        )
        assert [m["id"] for m in r.json()["matches"]] == [ids[3]]


async def test_search_filters_by_label_and_camera(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        meta = '[{"label": "a", "camera": "c1"}, {"label": "a", "camera": "c2"}, {"label": "b", "camera": "c1"}]'
        r = await client.post(
            "/gallery",
            params={"modality": "vis"},
            files=files(*(image_bytes(s) for s in (30, 31, 32))),
            data={"metadata": meta},
        )
        ids = r.json()["ids"]
        query = files(image_bytes(33), field="file")
        r = await client.post("/search", params={"modality": "ir", "label": "a"}, files=query)
        assert sorted(m["id"] for m in r.json()["matches"]) == ids[:2]
        r = await client.post("/search", params={"modality": "ir", "label": "a", "camera": "c2"}, files=query)
        assert [m["id"] for m in r.json()["matches"]] == [ids[1]]


async def test_a_multi_file_add_with_one_bad_image_adds_nothing(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        r = await client.post(
            "/gallery", params={"modality": "vis"}, files=files(image_bytes(40), b"not an image", image_bytes(41))
        )
        assert r.status_code == 415 and "img1.png" in r.json()["detail"]
        r = await client.post(
            "/gallery",
            params={"modality": "vis"},
            files=files(image_bytes(40), image_bytes(41)),
            data={"metadata": '[{"label": "only one entry"}]'},
        )
        assert r.status_code == 400
        page = (await client.get("/gallery")).json()
        assert page["items"] == [] and page["counts"] == {"vis": 0, "ir": 0}


async def test_parallel_adds_and_searches_lose_nothing(settings: Settings) -> None:
    async with serve(settings) as (_, client):

        async def add(i: int) -> list[int]:
            modality = "vis" if i % 2 else "ir"
            r = await client.post(
                "/gallery",
                params={"modality": modality},
                files=files(image_bytes(100 + i), image_bytes(200 + i)),
                data={"label": str(i)},
            )
            assert r.status_code == 201, r.text
            return list(r.json()["ids"])

        async def search(i: int) -> int:
            r = await client.post(
                "/search", params={"modality": "vis", "top_k": 5}, files=files(image_bytes(i), field="file")
            )
            assert r.status_code == 200, r.text
            return len(r.json()["matches"])

        results = await asyncio.gather(*(add(i) for i in range(24)), *(search(i) for i in range(24)))
        ids = [i for r in results[:24] for i in r]
        assert len(set(ids)) == 48
        page = (await client.get("/gallery", params={"limit": 1000})).json()
        assert sorted(i["id"] for i in page["items"]) == sorted(ids)
        assert page["counts"] == {"vis": 24, "ir": 24}
        labels = {i["label"] for i in page["items"]}
        assert labels == {str(i) for i in range(24)}


async def test_concurrent_embeds_are_micro_batched(tiny_models: TinyModels, tmp_path: Path) -> None:
    settings = Settings(
        model_dir=tiny_models.model_dir,
        data_dir=tmp_path / "g",
        providers=("CPUExecutionProvider",),
        max_batch=6,
        max_wait_ms=600_000,  # a batch closes only when full: grouping does not depend on timing
    )
    payloads = [image_bytes(300 + i) for i in range(6)]
    async with serve(settings) as (app, client):
        responses = await asyncio.gather(
            *(client.post("/embed", params={"modality": "ir"}, files=files(p)) for p in payloads)
        )
        registry = app.state.metrics.registry
        batches = registry.get_sample_value("vireid_encode_batch_size_count", {"modality": "ir"})
        images = registry.get_sample_value("vireid_encode_batch_size_sum", {"modality": "ir"})
        assert (batches, images) == (1.0, 6.0)
        for payload, r in zip(payloads, responses, strict=True):
            alone = await client.post("/embed", params={"modality": "ir"}, files=files(*[payload] * 6))
            np.testing.assert_allclose(r.json()["embeddings"][0], alone.json()["embeddings"][0], atol=1e-5)
        exposition = (await client.get("/metrics")).text
    assert 'vireid_encode_batch_size_count{modality="ir"} 7.0' in exposition


@pytest.mark.parametrize("spinning", [False, True])
async def test_encoder_sessions_take_the_thread_settings(settings: Settings, spinning: bool) -> None:
    async with serve(with_settings(settings, intra_op_threads=1, intra_op_spinning=spinning)) as (app, _):
        for encoder in app.state.runtime.encoders.values():
            options = encoder.session.get_session_options()
            assert options.intra_op_num_threads == 1
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")


async def test_readyz_reports_providers_and_metrics_expose_stages(settings: Settings, tiny_models: TinyModels) -> None:
    async with serve(settings) as (_, client):
        await client.post("/gallery", params={"modality": "vis"}, files=files(image_bytes(1)))
        await client.post("/search", params={"modality": "ir"}, files=files(image_bytes(2), field="file"))
        ready = (await client.get("/readyz")).json()
        metrics = (await client.get("/metrics")).text
        health = (await client.get("/healthz")).json()
    assert health == {"status": "ok"}
    assert ready["providers"] == {"vis": ["CPUExecutionProvider"], "ir": ["CPUExecutionProvider"]}
    assert (ready["status"], ready["model_version"], ready["embedding_dim"]) == (
        "ready",
        tiny_models.card.model_version,
        tiny_models.card.embedding_dim,
    )
    assert ready["gallery"] == {"vis": 1, "ir": 0}
    for stage in ("decode", "encode", "search"):
        assert f'vireid_stage_seconds_count{{stage="{stage}"}}' in metrics
    assert 'vireid_gallery_items{modality="vis"} 1.0' in metrics
    assert 'vireid_http_requests_total{method="POST",route="/gallery",status="201"} 1.0' in metrics


async def test_openapi_documents_endpoints_with_examples(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert {"/embed", "/gallery", "/gallery/{item_id}", "/search", "/healthz", "/readyz", "/metrics"} <= set(paths)
    search_body = paths["/search"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} == set(search_body)
    assert spec["components"]["schemas"]["SearchResponse"]["examples"][0]["matches"][0]["id"] == 7
    assert "X-API-Key" in str(spec["components"]["securitySchemes"])


async def test_refuses_to_start_on_a_gallery_of_another_model(
    settings: Settings, tiny_models: TinyModels, tmp_path: Path
) -> None:
    async with serve(settings) as (_, client):
        assert (
            await client.post("/gallery", params={"modality": "vis"}, files=files(image_bytes(1)))
        ).status_code == 201
    other = tiny_models.copy_to(tmp_path / "other-models")
    for m in Modality:
        set_card(other / encoder_filename(m), replace(tiny_models.cards[m], model_version="fedcba987654"))
    with pytest.raises(IndexMismatchError, match="fedcba987654"):
        async with serve(with_settings(settings, model_dir=other)):
            pass


async def test_refuses_to_start_on_a_gallery_another_process_serves(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        with pytest.raises(GalleryLockedError, match=rf"in use by process {os.getpid()} .*shared backend"):
            async with serve(settings):
                pass
        assert (await client.get("/readyz")).status_code == 200  # the first keeps serving

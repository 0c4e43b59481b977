"""The service on a Milvus gallery: unreachable at start, faults and recovery, two replicas on one server."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import anyio
import httpx
import pytest

from service.settings import Settings
from tests.cli.test_main import Server, start_server
from tests.index.backends import milvus_config
from tests.service.conftest import TinyModels
from tests.service.support import files, free_port, image_bytes, serve, with_settings


def _milvus(settings: Settings, uri: str) -> Settings:
    return with_settings(settings, index=milvus_config(uri, timeout_s=3.0, reconnect_max_s=1.0).model_dump(mode="json"))


def _assert_unavailable(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "gallery_unavailable" and reason in body["detail"], body


@pytest.mark.anyio
async def test_milvus_unreachable_at_start_is_503_and_metrics_still_served(
    settings: Settings, tiny_models: TinyModels
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with serve(_milvus(settings, uri)) as (_, client):
        assert (await client.get("/healthz")).status_code == 200
        _assert_unavailable(await client.get("/readyz"), f"Milvus at {uri} is unreachable")
        _assert_unavailable(await client.get("/gallery"), "unreachable")
        _assert_unavailable(await client.get("/gallery/1"), "unreachable")
        query = {"embedding": [1.0] + [0.0] * (tiny_models.card.embedding_dim - 1)}
        _assert_unavailable(await client.post("/search", params={"modality": "vis"}, json=query), "unreachable")
        added = await client.post("/gallery", params={"modality": "ir"}, files=files(image_bytes(1)))
        _assert_unavailable(added, "unreachable")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "vireid_gallery_reachable 0.0" in metrics.text


async def _wait_ready(client: httpx.AsyncClient, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, (await client.get("/readyz")).text
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.anyio
async def test_milvus_stopped_and_restarted_under_the_service(settings: Settings, milvus_server: object) -> None:
    server = milvus_server
    async with serve(_milvus(settings, server.uri)) as (_, client):  # type: ignore[attr-defined]
        # The first add creates and loads the collection, which can outlast the 3 s deadline on a busy machine:
        # the service says 503 gallery_unavailable, and a client tries again, as this one does.
        deadline = time.monotonic() + 90.0
        while True:
            two = files(image_bytes(1), image_bytes(2))
            added = await client.post("/gallery", params={"modality": "ir"}, files=two)
            if added.status_code == 201 or time.monotonic() > deadline:
                break
            _assert_unavailable(added, "Milvus at")
            await anyio.sleep(0.5)
        assert added.status_code == 201, added.text
        ids = added.json()["ids"]
        server.stop()  # type: ignore[attr-defined]
        try:
            _assert_unavailable(await client.get("/gallery"), "Milvus at")
            _assert_unavailable(await client.get("/readyz"), "Milvus at")
            more = await client.post("/gallery", params={"modality": "ir"}, files=files(image_bytes(3)))
            _assert_unavailable(more, "Milvus at")
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200 and "vireid_gallery_reachable 0.0" in metrics.text
        finally:
            server.start()  # type: ignore[attr-defined]
        await _wait_ready(client)
        page = (await client.get("/gallery")).json()
        assert [i["id"] for i in page["items"]] == ids and page["counts"] == {"vis": 0, "ir": 2}
        assert "vireid_gallery_reachable 1.0" in (await client.get("/metrics")).text


def _replica(tiny_models: TinyModels, tmp_path: Path, index: str, name: str) -> Server:
    (tmp_path / name).mkdir(exist_ok=True)
    return start_server(tiny_models, tmp_path / name, env={"VIREID_INDEX": index})


def _stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_two_replicas_on_one_server_see_each_others_writes(
    tiny_models: TinyModels, tmp_path: Path, milvus_server: object
) -> None:
    index = json.dumps(milvus_config(milvus_server.uri).model_dump(mode="json"))  # type: ignore[attr-defined]
    a, b = _replica(tiny_models, tmp_path, index, "a"), _replica(tiny_models, tmp_path, index, "b")
    try:
        with httpx.Client(base_url=a.url, timeout=60) as ca, httpx.Client(base_url=b.url, timeout=60) as cb:
            payloads = [image_bytes(s) for s in range(4)]
            ids_a = ca.post("/gallery", params={"modality": "ir"}, files=files(*payloads[:2])).json()["ids"]
            ids_b = cb.post("/gallery", params={"modality": "ir"}, files=files(*payloads[2:])).json()["ids"]
            assert not set(ids_a) & set(ids_b)
            emb = ca.post("/embed", params={"modality": "ir"}, files=files(payloads[0])).json()["embeddings"][0]
            hit = cb.post("/search", params={"modality": "vis", "top_k": 1}, json={"embedding": emb}).json()
            assert [m["id"] for m in hit["matches"]] == [ids_a[0]]
            assert cb.delete(f"/gallery/{ids_a[1]}").status_code == 204
            assert ca.get(f"/gallery/{ids_a[1]}").status_code == 404
            assert ca.delete(f"/gallery/{ids_a[1]}").status_code == 404
            page_a, page_b = ca.get("/gallery").json(), cb.get("/gallery").json()
            assert page_a == page_b and page_a["counts"] == {"vis": 0, "ir": 3}
        a.process.kill()  # not a clean stop: nothing it acknowledged may be lost
        a.process.wait(30)
        a = _replica(tiny_models, tmp_path, index, "a2")
        with httpx.Client(base_url=a.url, timeout=60) as ca:
            assert [i["id"] for i in ca.get("/gallery").json()["items"]] == sorted([ids_a[0], *ids_b])
    finally:
        for server in (a, b):
            if server.process.poll() is None:
                _stop(server)

"""The service behind real uvicorn on 127.0.0.1: readiness, parity, writes, search, limits, restart."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from common.modality import Modality
from common.model_card import encoder_filename
from common.preprocess import decode_image, to_input
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import TinyModels
from tests.service.support import files, image_bytes, uvicorn_server, with_settings


def test_service_over_http(settings: Settings, tiny_models: TinyModels) -> None:
    settings = with_settings(settings, api_key="k", max_body_bytes=200_000)
    payloads = [image_bytes(s) for s in range(5)]
    with uvicorn_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["providers"]["ir"] == ["CPUExecutionProvider"]
        r = client.post("/embed", params={"modality": "ir"}, files=files(*payloads))
        session = ort.InferenceSession(
            str(tiny_models.model_dir / encoder_filename(Modality.INFRARED)), providers=["CPUExecutionProvider"]
        )
        batch = np.stack(
            [to_input(decode_image(p), tiny_models.card.input_height, tiny_models.card.input_width) for p in payloads]
        )
        expected = session.run(["embeddings"], {"images": batch})[0]
        np.testing.assert_allclose(np.asarray(r.json()["embeddings"]), expected, atol=1e-4)
        added = client.post("/gallery", params={"modality": "ir"}, files=files(*payloads), headers={"X-API-Key": "k"})
        assert added.status_code == 201
        ids = added.json()["ids"]
        hit = client.post("/search", params={"modality": "vis", "top_k": 1}, json={"embedding": expected[2].tolist()})
        assert [m["id"] for m in hit.json()["matches"]] == [ids[2]]
        big = client.post("/embed", params={"modality": "ir"}, files=files(b"\0" * 300_000))
        assert big.status_code == 413 and big.json()["error"] == "body_too_large"
        assert client.post("/gallery", params={"modality": "ir"}, files=files(payloads[0])).status_code == 401
        assert 'vireid_gallery_items{modality="ir"} 5.0' in client.get("/metrics").text
    with uvicorn_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        page = client.get("/gallery").json()
        assert [i["id"] for i in page["items"]] == ids and page["counts"] == {"vis": 0, "ir": 5}


def test_an_internal_error_keeps_the_connection_open(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("test-only route failing")

    app.add_api_route("/boom", boom)  # the real middleware stack and error handlers, one route that raises
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with uvicorn_server(app) as url, httpx.Client(base_url=url, timeout=60, limits=limits) as client:
        failed = client.get("/boom")
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal_error", "detail": "internal server error; see the service log"}
        assert failed.headers.get("connection") != "close"
        after = client.get("/healthz")
        assert after.status_code == 200
        ports = [r.extensions["network_stream"].get_extra_info("client_addr")[1] for r in (failed, after)]
        assert ports[0] == ports[1], "the second request needed a new connection"
    assert "test-only route failing" in caplog.text  # the cause is logged

"""One test per error status: every failure is JSON {"error": code, "detail": message} and changes nothing."""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from service.app import create_app
from service.batching import EncodeTimeoutError, OverloadedError
from service.errors import BadParameterError
from service.routes.search import check_embedding
from service.settings import Settings
from tests.service.conftest import TinyModels
from tests.service.support import corrupt_exif_jpeg, files, image_bytes, serve, with_settings

pytestmark = pytest.mark.anyio


def assert_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return str(body["detail"])


async def gallery_count(client: httpx.AsyncClient) -> int:
    page = (await client.get("/gallery")).json()
    return int(page["total"])


async def test_400_bad_parameters(settings: Settings, tiny_models: TinyModels) -> None:
    dim = tiny_models.card.embedding_dim
    async with serve(with_settings(settings, max_files_per_request=2)) as (_, client):
        detail = assert_error(
            await client.post("/embed", params={"modality": "uv"}, files=files(image_bytes(1))), 400, "bad_parameter"
        )
        assert "unknown modality 'uv'" in detail
        assert_error(await client.get("/gallery", params={"modality": "x"}), 400, "bad_parameter")
        query = {"embedding": [1.0] + [0.0] * (dim - 1)}
        assert_error(
            await client.post("/search", params={"modality": "ir", "target": "uv"}, json=query), 400, "bad_parameter"
        )
        assert_error(
            await client.post("/search", params={"modality": "ir", "top_k": 5000}, json=query), 400, "bad_parameter"
        )
        detail = assert_error(
            await client.post("/search", params={"modality": "ir"}, json={"embedding": [1.0] * (dim + 1)}),
            400,
            "bad_parameter",
        )
        assert f"{dim + 1} values" in detail
        not_unit = {"embedding": [1.0] * dim}
        assert "L2 norm" in assert_error(
            await client.post("/search", params={"modality": "ir"}, json=not_unit), 400, "bad_parameter"
        )
        three = files(image_bytes(1), image_bytes(2), image_bytes(3))
        assert_error(await client.post("/gallery", params={"modality": "vis"}, files=three), 400, "too_many_files")
        assert await gallery_count(client) == 0


async def test_401_writes_need_the_api_key(settings: Settings) -> None:
    async with serve(with_settings(settings, api_key="s3cret")) as (_, client):
        upload = files(image_bytes(1))
        assert_error(await client.post("/gallery", params={"modality": "vis"}, files=upload), 401, "unauthorized")
        wrong = {"X-API-Key": "guess"}
        assert_error(
            await client.post("/gallery", params={"modality": "vis"}, files=upload, headers=wrong), 401, "unauthorized"
        )
        assert await gallery_count(client) == 0
        ok = await client.post("/gallery", params={"modality": "vis"}, files=upload, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 201
        (item_id,) = ok.json()["ids"]
        assert_error(await client.delete(f"/gallery/{item_id}"), 401, "unauthorized")
        assert (await client.get(f"/gallery/{item_id}")).status_code == 200  # reads need no key
        assert (await client.post("/embed", params={"modality": "vis"}, files=upload)).status_code == 200
        deleted = await client.delete(f"/gallery/{item_id}", headers={"X-API-Key": "s3cret"})
        assert deleted.status_code == 204


async def test_404_unknown_id_and_route(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        assert "12345" in assert_error(await client.get("/gallery/12345"), 404, "not_found")
        assert_error(await client.delete("/gallery/12345"), 404, "not_found")
        assert_error(await client.get("/no/such/route"), 404, "not_found")


async def test_413_body_limit_enforced_while_streaming(settings: Settings) -> None:
    limit = 64 * 1024
    chunk = 16 * 1024
    sent = 0
    boundary = "vireidboundary"

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: the limit must be found while reading
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(100):
            sent += 1
            yield b"\0" * chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    async with serve(with_settings(settings, max_body_bytes=limit)) as (_, client):
        r = await client.post(
            "/gallery",
            params={"modality": "vis"},
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert "65536 bytes" in assert_error(r, 413, "body_too_large")
        assert sent <= limit // chunk + 1  # reading stopped at the limit, not after 1.6 MB
        assert await gallery_count(client) == 0


async def test_413_declared_content_length_refused_before_reading(settings: Settings) -> None:
    async with serve(with_settings(settings, max_body_bytes=1000)) as (_, client):
        r = await client.post("/embed", params={"modality": "vis"}, files=files(image_bytes(1, size=(64, 64))))
        assert "Content-Length is" in assert_error(r, 413, "body_too_large")


async def test_413_decompression_bomb_guard(settings: Settings) -> None:
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, format="PNG")  # 16 Mpx in a few kB
    assert len(buf.getvalue()) < 100_000
    async with serve(with_settings(settings, max_image_pixels=1_000_000)) as (_, client):
        bomb = files(image_bytes(1), buf.getvalue())
        detail = assert_error(
            await client.post("/gallery", params={"modality": "ir"}, files=bomb), 413, "image_too_large"
        )
        assert "img1.png" in detail and "4000x4000" in detail
        assert await gallery_count(client) == 0


async def test_413_request_pixels_summed_from_the_headers_before_decoding(settings: Settings) -> None:
    square = image_bytes(1, size=(64, 64))  # 4096 pixels each
    truncated = image_bytes(2, size=(64, 64))[:200]  # a readable header, pixels that never decode
    async with serve(with_settings(settings, max_request_pixels=2 * 64 * 64)) as (_, client):
        three = files(square, image_bytes(3, size=(64, 64)), truncated)
        detail = assert_error(
            await client.post("/gallery", params={"modality": "vis"}, files=three), 413, "request_too_large"
        )
        assert "12288 pixels" in detail and "8192" in detail  # the truncated file was refused, not decoded
        assert await gallery_count(client) == 0
        two = files(square, image_bytes(3, size=(64, 64)))
        assert (await client.post("/gallery", params={"modality": "vis"}, files=two)).status_code == 201
        r = await client.post("/embed", params={"modality": "vis"}, files=files(square, truncated))
        assert "img1.png" in assert_error(r, 415, "unsupported_image")  # within the total, it is decoded: 415


async def test_503_overloaded_and_timed_out_carry_retry_after(settings: Settings) -> None:
    async with serve(settings) as (app, client):

        async def busy(kind: str) -> None:
            error = OverloadedError if kind == "full" else EncodeTimeoutError
            raise error(f"encoder vis: {kind}", 7)

        app.add_api_route("/busy/{kind}", busy)
        for kind, code in (("full", "overloaded"), ("slow", "encode_timeout")):
            r = await client.get(f"/busy/{kind}")
            assert assert_error(r, 503, code) == f"encoder vis: {kind}"
            assert r.headers["Retry-After"] == "7"
        r = await client.post("/embed", params={"modality": "vis"}, files=files(image_bytes(1)))
        assert r.status_code == 200 and "Retry-After" not in r.headers


async def test_415_undecodable_image_and_unsupported_content_type(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        r = await client.post("/embed", params={"modality": "vis"}, files=files(b"GIF89a-truncated"))
        assert "img0.png" in assert_error(r, 415, "unsupported_image")
        r = await client.post(
            "/search", params={"modality": "vis"}, content=b"hello", headers={"Content-Type": "text/plain"}
        )
        assert_error(r, 415, "unsupported_media_type")


async def test_a_corrupt_exif_block_is_no_500_on_any_image_endpoint(settings: Settings) -> None:
    data = corrupt_exif_jpeg(3)
    async with serve(settings) as (_, client):
        embedded = await client.post("/embed", params={"modality": "vis"}, files=files(data))
        assert embedded.status_code == 200, embedded.text
        added = await client.post("/gallery", params={"modality": "vis"}, files=files(data))
        assert added.status_code == 201, added.text
        found = await client.post("/search", params={"modality": "ir", "top_k": 1}, files=files(data, field="file"))
        assert found.status_code == 200, found.text
        assert [m["id"] for m in found.json()["matches"]] == added.json()["ids"]


async def test_422_integers_past_sqlite_range_with_bounds_in_openapi(settings: Settings) -> None:
    big = 2**63
    async with serve(settings) as (_, client):
        assert "offset" in assert_error(await client.get("/gallery", params={"offset": big}), 422, "validation_error")
        assert "item_id" in assert_error(await client.get(f"/gallery/{big}"), 422, "validation_error")
        assert "item_id" in assert_error(await client.delete(f"/gallery/{big}"), 422, "validation_error")
        assert "item_id" in assert_error(await client.get(f"/gallery/{-big - 1}"), 422, "validation_error")
        last = await client.get("/gallery", params={"offset": big - 1})
        assert last.status_code == 200 and last.json()["items"] == []
        assert_error(await client.get(f"/gallery/{big - 1}"), 404, "not_found")
        paths = (await client.get("/openapi.json")).json()["paths"]
    (offset,) = [p for p in paths["/gallery"]["get"]["parameters"] if p["name"] == "offset"]
    assert offset["schema"]["maximum"] == big - 1
    for method in ("get", "delete"):
        (item_id,) = paths["/gallery/{item_id}"][method]["parameters"]
        assert item_id["schema"]["maximum"] == big - 1


async def test_422_validation_in_the_same_shape(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        assert "files" in assert_error(await client.post("/embed", params={"modality": "vis"}), 422, "validation_error")
        r = await client.post("/search", params={"modality": "vis", "top_k": 0}, json={"embedding": [1.0]})
        assert "top_k" in assert_error(r, 422, "validation_error")
        r = await client.post("/search", params={"modality": "vis"}, json={"vector": [1.0]})
        assert "embedding" in assert_error(r, 422, "validation_error")
        r = await client.post("/search", params={"modality": "vis"}, files=files(image_bytes(1)))  # field `files`
        assert "file" in assert_error(r, 422, "validation_error")
        r = await client.post(
            "/gallery", params={"modality": "vis"}, files=files(image_bytes(1)), data={"metadata": '[{"label": 3}]'}
        )
        assert "metadata.0.label" in assert_error(r, 422, "validation_error")
        r = await client.post(
            "/gallery", params={"modality": "vis"}, files=files(image_bytes(1)), data={"captured_at": "yesterday"}
        )
        assert "captured_at" in assert_error(r, 422, "validation_error")
        r = await client.post("/gallery", params={"modality": "vis"}, files=files(image_bytes(1)), data={"extra": "{"})
        assert_error(r, 422, "validation_error")
        assert await gallery_count(client) == 0


async def test_503_until_loaded_and_after_shutdown(settings: Settings) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, not ready
        assert_error(await client.get("/readyz"), 503, "not_ready")
        assert_error(
            await client.post("/embed", params={"modality": "vis"}, files=files(image_bytes(1))), 503, "not_ready"
        )
        async with app.router.lifespan_context(app):
            assert (await client.get("/readyz")).status_code == 200
        assert_error(await client.get("/readyz"), 503, "not_ready")
        assert_error(await client.get("/gallery"), 503, "not_ready")


def test_an_embedding_value_past_float32_range_is_400_without_a_warning() -> None:
    """1e39 fits a JSON number but not a float32: refused as non-finite, with no numpy overflow warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BadParameterError, match="non-finite"):
            check_embedding([1e39, 0.0, 0.0, 0.0], 4)

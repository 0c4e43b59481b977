"""Routes told apart by Content-Type (service.media_routes): routing, 415 naming the accepted types, merged OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, File, UploadFile
from pydantic import BaseModel

from service.app import create_app
from service.errors import install_error_handlers
from service.media_routes import MediaTypeRoute, document_shared_operations
from service.settings import Settings
from tests.service.support import files, image_bytes, serve

pytestmark = pytest.mark.anyio


class Point(BaseModel):
    """The JSON body of the echo app."""

    x: int


def echo_app() -> FastAPI:
    """A multipart and a JSON endpoint at POST /v1/echo, a GET beside them, on a prefixed router."""
    router = APIRouter(route_class=MediaTypeRoute)

    @router.post("/echo", summary="Echo a file or a point")
    async def echo_file(file: Annotated[UploadFile, File(description="any file")]) -> dict[str, str]:
        """Documented for both bodies."""
        return {"got": f"file {(await file.read()).decode()}"}

    @router.post("/echo")
    async def echo_point(point: Point) -> dict[str, str]:
        """Not shown: the operation is documented by the first route."""
        return {"got": f"point {point.x}"}

    @router.get("/echo")
    async def read_echo() -> dict[str, str]:
        """A route without a body."""
        return {"got": "get"}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router, prefix="/v1")
    document_shared_operations(app)
    return app


def client_of(app: FastAPI) -> httpx.AsyncClient:
    """An in-process client of ``app`` (its lifespan is not run)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")


async def test_each_media_type_reaches_its_own_endpoint() -> None:
    async with client_of(echo_app()) as client:
        r = await client.post("/v1/echo", files={"file": ("a.txt", b"abc", "text/plain")})
        assert r.json() == {"got": "file abc"}
        r = await client.post("/v1/echo", json={"x": 3})
        assert r.json() == {"got": "point 3"}
        r = await client.post(
            "/v1/echo", content=b'{"x": 4}', headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
        assert r.json() == {"got": "point 4"}
        assert (await client.get("/v1/echo")).json() == {"got": "get"}  # a route without a body matches as before
        r = await client.post("/v1/echo", json={"y": 1})  # the JSON endpoint validates its own model
        assert r.status_code == 422 and "body.x" in r.json()["detail"]


async def test_other_media_types_get_415_naming_the_accepted_ones() -> None:
    async with client_of(echo_app()) as client:
        for headers in ({"Content-Type": "text/plain"}, {}):
            r = await client.post("/v1/echo", content=b"hello", headers=headers)
            assert r.status_code == 415
            body = r.json()
            assert body["error"] == "unsupported_media_type"
            assert "POST /v1/echo takes multipart/form-data or application/json" in body["detail"]
        r = await client.put("/v1/echo", json={"x": 1})  # a wrong method is still 405, whatever the type
        assert r.status_code == 405


async def test_openapi_shows_one_operation_with_every_body() -> None:
    async with client_of(echo_app()) as client:
        spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/echo"]["post"]
    assert operation["summary"] == "Echo a file or a point"  # the first route documents the operation
    assert operation["description"] == "Documented for both bodies."
    body = operation["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["multipart/form-data", "application/json"]
    multipart_ref = body["content"]["multipart/form-data"]["schema"]["$ref"]
    multipart = spec["components"]["schemas"][multipart_ref.rsplit("/", 1)[1]]
    assert multipart["properties"]["file"]["contentMediaType"] == "application/octet-stream"
    assert multipart["required"] == ["file"]
    assert body["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Point"
    assert set(spec["components"]["schemas"]["Point"]["properties"]) == {"x"}
    assert "get" in spec["paths"]["/v1/echo"]


async def test_search_routes_by_content_type(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        dim = (await client.get("/readyz")).json()["embedding_dim"]
        query = b'{"embedding": [1.0' + b", 0.0" * (dim - 1) + b"]}"
        r = await client.post(
            "/search",
            params={"modality": "ir"},
            content=query,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 200 and r.json()["matches"] == []
        r = await client.post("/search", params={"modality": "ir"}, files=files(image_bytes(1), field="file"))
        assert r.status_code == 200 and r.json()["query_modality"] == "ir"
        r = await client.post("/search", params={"modality": "ir"}, content=b"x", headers={"Content-Type": "image/png"})
        assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
        assert "takes multipart/form-data or application/json" in r.json()["detail"]


async def test_search_openapi_body_comes_from_the_declared_models(settings: Settings) -> None:
    async with client_of(create_app(settings)) as client:  # the schema needs nothing loaded
        spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/search"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/json"]["schema"]["$ref"] == "#/components/schemas/EmbeddingQuery"
    assert content["application/json"]["examples"]["embedding"]["value"]["embedding"]
    multipart = spec["components"]["schemas"][content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]]
    query_images = multipart["properties"]["file"]  # one image, or several crops of one person (a tracklet)
    assert query_images["items"]["contentMediaType"] == "application/octet-stream"
    assert (query_images["minItems"], query_images["maxItems"]) == (1, settings.max_files_per_request)
    assert multipart["required"] == ["file"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"modality", "top_k", "target", "min_score", "label", "camera", "rerank"}
    assert "curl -F file=@" in operation["description"]
    assert set(operation["responses"]) >= {"200", "400", "413", "415", "422", "503"}


async def test_routes_needing_loaded_pieces_are_503_until_loaded_and_metrics_always_answer(settings: Settings) -> None:
    vis = {"modality": "vis"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/readyz", {}),
        ("GET", "/gallery", {}),
        ("GET", "/gallery/1", {}),
        ("DELETE", "/gallery/1", {}),
        ("POST", "/gallery", {"params": vis, "files": files(image_bytes(1))}),
        ("POST", "/embed", {"params": vis, "files": files(image_bytes(1))}),
        ("POST", "/search", {"params": vis, "files": files(image_bytes(1), field="file")}),
        ("POST", "/search", {"params": vis, "json": {"embedding": [1.0]}}),
    ]
    async with client_of(create_app(settings)) as client:  # lifespan not run: nothing loaded
        for method, url, kwargs in requests:
            r = await client.request(method, url, **kwargs)
            assert (r.status_code, r.json()["error"]) == (503, "not_ready"), (method, url)
        r = await client.get("/metrics")
        assert r.status_code == 200 and "vireid_http_requests_total" in r.text

"""The OpenAPI document of the real app says what the service really accepts and answers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import numpy as np
import pytest

from common.modality import MODALITY_NAMES
from index.base import GalleryItem
from service.app import create_app
from service.schemas import GalleryItemOut
from service.settings import Settings
from tests.service.support import files, image_bytes, serve, with_settings

pytestmark = pytest.mark.anyio

ERROR_BODY = {"$ref": "#/components/schemas/ErrorResponse"}


async def document_of(client: httpx.AsyncClient, key: str | None = None) -> dict[str, Any]:
    r = await client.get("/openapi.json", headers={"X-API-Key": key} if key else {})
    assert r.status_code == 200, r.text
    spec: dict[str, Any] = r.json()
    return spec


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def assert_documented_error(spec: dict[str, Any], method: str, path: str, r: httpx.Response) -> None:
    """``r`` is an error the document lists for the operation, with the documented body."""
    response = spec["paths"][path][method]["responses"].get(str(r.status_code))
    assert response is not None, (method, path, r.status_code)
    assert response["content"]["application/json"]["schema"] == ERROR_BODY
    body = r.json()
    assert set(body) == {"error", "detail"} and all(isinstance(v, str) for v in body.values())


async def test_every_error_status_is_the_error_body_with_the_middlewares_statuses(settings: Settings) -> None:
    keyed = with_settings(settings, api_key="w" * 16, read_api_key="r" * 16, auth_reads=True)
    async with serve(keyed) as (_, client):
        spec = await document_of(client, key="r" * 16)
        assert "ValidationError" not in json.dumps(spec)  # FastAPI's HTTPValidationError list shape is gone
        for path, method, op in operations(spec):
            errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
            assert {"413", "500"} <= set(errors), (method, path)
            for status, response in errors.items():
                assert response["content"]["application/json"]["schema"] == ERROR_BODY, (method, path, status)
        auth = {(p, m): {"401", "403"} & set(op["responses"]) for p, m, op in operations(spec)}
        assert auth[("/healthz", "get")] == auth[("/readyz", "get")] == set()
        assert auth[("/embed", "post")] == auth[("/gallery", "get")] == auth[("/metrics", "get")] == {"401"}
        assert auth[("/gallery", "post")] == auth[("/gallery/{item_id}", "delete")] == {"401", "403"}
        assert_documented_error(spec, "get", "/metrics", await client.get("/metrics"))
        read = {"X-API-Key": "r" * 16}
        r = await client.delete("/gallery/1", headers=read)
        assert r.status_code == 403
        assert_documented_error(spec, "delete", "/gallery/{item_id}", r)
        r = await client.get("/gallery", params={"offset": -1}, headers=read)
        assert r.status_code == 422
        assert_documented_error(spec, "get", "/gallery", r)


async def test_modality_parameters_list_exactly_the_names_the_service_takes(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        spec = await document_of(client)
        dim = (await client.get("/readyz")).json()["embedding_dim"]
        params = {(p, m, q["name"]): q["schema"] for p, m, op in operations(spec) for q in op.get("parameters", [])}
        names = [params[key]["enum"] for key in params if key[2] == "modality"]
        assert len(names) == 4 and all(n == list(MODALITY_NAMES) for n in names)
        target = params[("/search", "post", "target")]["enum"]
        assert target == [*MODALITY_NAMES, "any", "all"]
        for name in MODALITY_NAMES:
            assert (await client.get("/gallery", params={"modality": name.upper()})).status_code == 200
        query = {"embedding": [1.0] + [0.0] * (dim - 1)}
        for name in target:
            r = await client.post("/search", params={"modality": "ir", "target": f" {name} "}, json=query)
            assert r.status_code == 200, (name, r.text)
        r = await client.get("/gallery", params={"modality": "visual"})
        assert r.status_code == 400 and "visual" not in names[0]
        assert_documented_error(spec, "get", "/gallery", r)


async def test_embedding_length_is_the_loaded_models_and_unknown_before_loading(settings: Settings) -> None:
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as client:
        before = (await document_of(client))["components"]["schemas"]["EmbeddingQuery"]["properties"]["embedding"]
        assert "not loaded" in before["description"] and "maxItems" not in before
        async with app.router.lifespan_context(app):
            dim = (await client.get("/readyz")).json()["embedding_dim"]
            spec = await document_of(client)
            embedding = spec["components"]["schemas"]["EmbeddingQuery"]["properties"]["embedding"]
            assert (embedding["minItems"], embedding["maxItems"]) == (dim, dim)
            assert "not loaded" not in embedding["description"]
            for n, status in ((dim, 200), (dim + 1, 400), (dim - 1, 400)):
                values = np.full(n, 1 / np.sqrt(n)).tolist()
                r = await client.post("/search", params={"modality": "vis"}, json={"embedding": values})
                assert r.status_code == status, (n, r.text)
            assert_documented_error(spec, "post", "/search", r)


async def test_405_is_the_error_body_with_every_method_of_the_path_in_allow(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        spec = await document_of(client)
        assert "405 `method_not_allowed`" in spec["info"]["description"]
        assert "`Allow` header" in spec["info"]["description"]
        for path, item in spec["paths"].items():
            r = await client.patch(path.replace("{item_id}", "1"))
            assert r.status_code == 405, path
            assert r.json() == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
            assert r.headers["allow"] == ", ".join(sorted(m.upper() for m in item)), path


async def test_uploads_take_one_to_max_files_per_request_as_documented(settings: Settings) -> None:
    async with serve(with_settings(settings, max_files_per_request=2)) as (_, client):
        spec = await document_of(client)
        for path, body in (("/embed", "Body_embed_embed_post"), ("/gallery", "Body_add_items_gallery_post")):
            schema = spec["components"]["schemas"][body]["properties"]["files"]
            assert (schema["minItems"], schema["maxItems"]) == (1, 2)
            r = await client.post(path, params={"modality": "vis"}, files={"label": (None, b"0042")})
            assert r.status_code == 422 and "files" in r.json()["detail"], r.text
            assert_documented_error(spec, "post", path, r)
            r = await client.post(path, params={"modality": "vis"}, files=files(*[image_bytes(i) for i in range(3)]))
            assert (r.status_code, r.json()["error"]) == (400, "too_many_files"), r.text
            assert_documented_error(spec, "post", path, r)
            r = await client.post(path, params={"modality": "vis"}, files=files(image_bytes(1), image_bytes(2)))
            assert r.status_code < 300, r.text


def test_the_item_schema_names_every_field_of_a_gallery_item() -> None:
    """``GalleryItemOut`` is declared apart from ``index.base.GalleryItem`` (it is the HTTP contract), so a field
    added to the dataclass must be added to the schema on purpose: this fails until it is."""
    assert list(GalleryItemOut.model_fields) == [f.name for f in dataclasses.fields(GalleryItem)]

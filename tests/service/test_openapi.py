"""The OpenAPI document of the real app says what the service really accepts and answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from common.modality import MODALITY_NAMES
from service.settings import Settings
from tests.service.support import serve

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

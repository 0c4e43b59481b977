"""Gallery metadata is checked once, at the edge: what is accepted reads back; what could not is 422 up front."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.service.support import files, image_bytes, serve, with_settings
from tests.service.test_errors import assert_error, gallery_count

pytestmark = pytest.mark.anyio


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... 1}}`` with ``depth`` objects."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    result: dict[str, Any] = value
    return result


async def add(client: httpx.AsyncClient, count: int = 1, **data: str) -> httpx.Response:
    payloads = [image_bytes(seed) for seed in range(count)]
    return await client.post("/gallery", params={"modality": "vis"}, files=files(*payloads), data=data)


async def test_extra_too_deep_not_json_or_not_encodable_is_422_and_stores_nothing(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        for depth in (300, 1000):  # 300 was stored and broke every later read; 1000 was a 500 (RecursionError)
            raw = '{"a":' * depth + "1" + "}" * depth
            assert "nested" in assert_error(await add(client, extra=raw), 422, "validation_error")
        for raw in ('{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}', '{"x": 1e400}'):
            detail = assert_error(await add(client, extra=raw), 422, "validation_error")
            assert "extra" in detail and "standard JSON" in detail
        assert_error(await add(client, extra='{"x": "\\ud800"}'), 422, "validation_error")  # a lone surrogate
        entries = json.dumps([{"extra": nested(50)}])
        assert "metadata.0.extra" in assert_error(await add(client, metadata=entries), 422, "validation_error")
        assert await gallery_count(client) == 0


async def test_extra_over_the_size_or_key_limits_is_422(settings: Settings) -> None:
    limited = with_settings(settings, max_extra_bytes=100, max_extra_keys=5)
    async with serve(limited) as (_, client):
        detail = assert_error(await add(client, extra=json.dumps({"x": "y" * 100})), 422, "validation_error")
        assert "100 bytes" in detail and "VIREID_MAX_EXTRA_BYTES" in detail
        many = {f"k{i}": i for i in range(6)}
        detail = assert_error(await add(client, metadata=json.dumps([{"extra": many}])), 422, "validation_error")
        assert "6 keys" in detail and "VIREID_MAX_EXTRA_KEYS" in detail
        assert (await add(client, extra=json.dumps({f"k{i}": i for i in range(5)}))).status_code == 201


async def test_extra_at_the_limits_reads_back_everywhere(settings: Settings) -> None:
    deepest = nested(settings.max_extra_depth)
    async with serve(settings) as (_, client):
        added = await add(client, extra=json.dumps(deepest))
        assert added.status_code == 201, added.text
        (item_id,) = added.json()["ids"]
        one = await client.get(f"/gallery/{item_id}")
        assert one.status_code == 200 and one.json()["extra"] == deepest
        page = await client.get("/gallery")
        assert page.status_code == 200 and page.json()["items"][0]["extra"] == deepest
        hit = await client.post(
            "/search", params={"modality": "ir", "top_k": 1}, files=files(image_bytes(0), field="file")
        )
        assert hit.status_code == 200 and hit.json()["matches"][0]["metadata"]["extra"] == deepest
        too_deep = json.dumps(nested(settings.max_extra_depth + 1))
        assert "VIREID_MAX_EXTRA_DEPTH" in assert_error(await add(client, extra=too_deep), 422, "validation_error")


async def test_a_shared_extra_counts_once_per_file_against_the_request_limit(settings: Settings) -> None:
    limited = with_settings(settings, max_metadata_bytes_per_request=1000)
    shared = json.dumps({"note": "n" * 400})  # ~410 bytes, stored with each file
    async with serve(limited) as (_, client):
        detail = assert_error(await add(client, count=3, extra=shared), 422, "validation_error")
        assert "VIREID_MAX_METADATA_BYTES_PER_REQUEST" in detail and "1000" in detail
        big_label = json.dumps([{"label": "x" * 600}, {"label": "y" * 600}])
        assert_error(await add(client, count=2, metadata=big_label), 422, "validation_error")
        assert await gallery_count(client) == 0
        assert (await add(client, count=2, extra=shared)).status_code == 201

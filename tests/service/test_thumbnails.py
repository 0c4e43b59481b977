"""Gallery thumbnails: made at add time (oriented, bounded), served with an ETag, removed with the item."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from service.settings import Settings
from service.thumbnails import etag_matches
from tests.service.support import corrupt_exif_jpeg, files, image_bytes, serve, with_settings

pytestmark = pytest.mark.anyio


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        return img.size


async def test_thumbnails_are_bounded_oriented_cached_and_removed_with_the_item(settings: Settings) -> None:
    payloads = [image_bytes(1, size=(600, 300)), image_bytes(2, size=(24, 48)), corrupt_exif_jpeg(3, size=(24, 48))]
    async with serve(with_settings(settings, thumbnail_size=256)) as (_, client):
        added = await client.post("/gallery", params={"modality": "vis"}, files=files(*payloads))
        assert added.status_code == 201, added.text
        big, small, rotated = added.json()["ids"]
        r = await client.get(f"/gallery/{big}/thumbnail")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert jpeg_size(r.content) == (256, 128)  # longest side bounded, aspect kept
        assert jpeg_size((await client.get(f"/gallery/{small}/thumbnail")).content) == (24, 48)  # never enlarged
        assert jpeg_size((await client.get(f"/gallery/{rotated}/thumbnail")).content) == (48, 24)  # EXIF applied
        tag = r.headers["etag"]
        assert tag.startswith('"') and r.headers["cache-control"] == "private, no-cache"
        again = await client.get(f"/gallery/{big}/thumbnail", headers={"If-None-Match": f'"other", {tag}'})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
        other = await client.get(f"/gallery/{small}/thumbnail", headers={"If-None-Match": tag})
        assert other.status_code == 200 and other.headers["etag"] != tag
        assert (await client.delete(f"/gallery/{big}")).status_code == 204
        gone = await client.get(f"/gallery/{big}/thumbnail")
        assert gone.status_code == 404 and gone.json()["error"] == "not_found"
        assert (await client.get("/gallery/999/thumbnail")).status_code == 404


async def test_an_item_added_without_a_thumbnail_is_a_clear_404(settings: Settings) -> None:
    async with serve(with_settings(settings, thumbnail_size=0)) as (_, client):
        added = await client.post("/gallery", params={"modality": "ir"}, files=files(image_bytes(4)))
        (item_id,) = added.json()["ids"]
        r = await client.get(f"/gallery/{item_id}/thumbnail")
        assert r.status_code == 404 and "has no thumbnail" in r.json()["detail"]
        assert (await client.get(f"/gallery/{item_id}")).status_code == 200  # the item itself is there


async def test_thumbnails_are_reads_under_auth_reads(settings: Settings) -> None:
    keyed = with_settings(settings, api_key="w" * 16, read_api_key="r" * 16, auth_reads=True)
    async with serve(keyed) as (_, client):
        added = await client.post(
            "/gallery", params={"modality": "vis"}, files=files(image_bytes(5)), headers={"X-API-Key": "w" * 16}
        )
        (item_id,) = added.json()["ids"]
        assert (await client.get(f"/gallery/{item_id}/thumbnail")).status_code == 401
        ok = await client.get(f"/gallery/{item_id}/thumbnail", headers={"X-API-Key": "r" * 16})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("header", "matches"),
    [(None, False), ('"a"', True), ('W/"a"', True), ('"b", "a"', True), ("*", True), ('"b"', False), ("a", False)],
)
def test_etag_matching(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"a"') is matches

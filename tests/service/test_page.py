"""The web page's files: served at / and /ui/ under a strict CSP, open to all, nothing from another origin."""

from __future__ import annotations

import re

import pytest

from service.settings import Settings
from service.ui import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.service.support import serve, with_settings

pytestmark = pytest.mark.anyio


async def test_the_page_is_served_at_the_root_and_under_ui_with_its_headers(settings: Settings) -> None:
    keyed = with_settings(settings, api_key="w" * 16, read_api_key="r" * 16, auth_reads=True)
    async with serve(keyed) as (_, client):
        index = (STATIC_DIR / "index.html").read_text()
        for path in ("/", "/ui/", "/ui/index.html"):
            r = await client.get(path)  # no key: the files hold no data
            assert r.status_code == 200 and r.text == index, path
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert r.headers["x-content-type-options"] == "nosniff"
        script = await client.get("/ui/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        again = await client.get("/ui/app.js", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304
        assert (await client.get("/ui")).status_code in (200, 307)
        assert (await client.get("/gallery")).status_code == 401  # the data behind the page still needs the key
        assert (await client.get("/ui/missing.js")).json()["error"] == "not_found"
        assert (await client.get("/ui/..%2F..%2Fsettings.py")).status_code == 404
        assert (await client.post("/ui/app.js")).status_code == 401  # not a read: a write, refused without key
        spec = (await client.get("/openapi.json", headers={"X-API-Key": "r" * 16})).json()
        assert not [p for p in spec["paths"] if p == "/" or p.startswith("/ui")]  # not API


def test_the_page_references_nothing_outside_the_origin() -> None:
    for path in STATIC_DIR.iterdir():
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # an XML namespace name, not something fetched
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]", text, re.IGNORECASE), path  # no absolute URL
        assert "style=" not in text and "onclick" not in text.lower(), path  # nothing inline the CSP would block
    html = (STATIC_DIR / "index.html").read_text()
    assert "<script>" not in html and "<style" not in html
    assert 'aria-label="Matches"' in html and 'role="list"' in html

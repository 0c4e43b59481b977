"""Read protection: which key may call what, refused before the body is read, through the real app."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from service.app import create_app
from service.auth import Access, ApiKeys, Kind, classify
from service.deps import WRITE_ACCESS
from service.errors import ForbiddenError, UnauthorizedError
from service.settings import Settings
from tests.service.conftest import TinyModels
from tests.service.support import files, image_bytes, serve, uvicorn_server, with_settings
from tests.service.test_errors import assert_error

pytestmark = pytest.mark.anyio

WRITE, READ = {"X-API-Key": "w-s3cret"}, {"X-API-Key": "r-s3cret"}
KEYS = {"api_key": "w-s3cret", "read_api_key": "r-s3cret"}


def unit_query(dim: int) -> dict[str, list[float]]:
    """A JSON /search body: a unit embedding."""
    return {"embedding": [1.0] + [0.0] * (dim - 1)}


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/healthz", "open"),
        ("GET", "/readyz", "open"),
        ("GET", "/metrics", "read"),
        ("GET", "/openapi.json", "read"),
        ("GET", "/docs", "read"),
        ("HEAD", "/gallery", "read"),
        ("GET", "/gallery/3", "read"),
        ("POST", "/embed", "read"),
        ("POST", "/search", "read"),
        ("POST", "/gallery", "write"),
        ("DELETE", "/gallery/3", "write"),
        ("PUT", "/gallery/3", "write"),
        ("POST", "/embed/", "write"),  # anything not known to read is a write
        ("POST", "/no/such/route", "write"),
        ("GET", "/", "open"),  # the web page's files hold no data
        ("HEAD", "/ui/app.js", "open"),
        ("GET", "/ui", "open"),
        ("POST", "/", "write"),
        ("DELETE", "/ui/app.js", "write"),
        ("GET", "/uix", "read"),
    ],
)
def test_classify(method: str, path: str, kind: str) -> None:
    assert classify(method, path) == kind


def test_the_classification_matches_the_routes(settings: Settings) -> None:
    """Every route (docs included) is classified as a write exactly when it depends on WRITE_ACCESS."""
    routes = list(iter_route_contexts(create_app(settings).routes))
    assert {r.path_format for r in routes} >= {"/docs", "/gallery", "/gallery/{item_id}", "/search", "/metrics"}
    for route in routes:
        is_write = any(d.dependency is WRITE_ACCESS.dependency for d in getattr(route, "dependencies", ()))
        path = cast(str, route.path_format)
        for method in route.methods or ():
            expected = "write" if is_write else "open" if path in ("/healthz", "/readyz", "/") else "read"
            assert classify(method, path) == expected, (method, path)


@pytest.mark.parametrize(
    ("keys", "kind", "header", "outcome"),
    [
        ({}, "write", None, "none"),  # today's default: everything open
        ({}, "write", "anything", "none"),
        ({"api_key": "w"}, "read", None, "none"),
        ({"api_key": "w"}, "write", None, UnauthorizedError),
        ({"api_key": "w"}, "write", "x", UnauthorizedError),
        ({"api_key": "w"}, "write", "w", "write"),
        ({"api_key": "w", "read_api_key": "r"}, "read", "r", "read"),
        ({"api_key": "w", "read_api_key": "r"}, "read", "x", "none"),  # reads stay open without auth_reads
        ({"api_key": "w", "read_api_key": "r"}, "write", "r", ForbiddenError),
        ({"api_key": "w", "read_api_key": "r", "auth_reads": True}, "read", None, UnauthorizedError),
        ({"api_key": "w", "read_api_key": "r", "auth_reads": True}, "read", "x", UnauthorizedError),
        ({"api_key": "w", "read_api_key": "r", "auth_reads": True}, "read", "r", "read"),
        ({"api_key": "w", "read_api_key": "r", "auth_reads": True}, "read", "w", "write"),
        ({"api_key": "w", "read_api_key": "r", "auth_reads": True}, "open", None, "none"),
        ({"read_api_key": "r", "auth_reads": True}, "write", "r", ForbiddenError),  # a read-only service
        ({"read_api_key": "r", "auth_reads": True}, "write", "w", UnauthorizedError),
        ({"read_api_key": "r"}, "write", None, UnauthorizedError),  # a key configured: writes are protected
    ],
)
def test_api_keys_policy(keys: dict[str, object], kind: Kind, header: str | None, outcome: object) -> None:
    policy = ApiKeys(Settings(**keys))  # type: ignore[arg-type]
    access = Access(kind, policy.key_name(header))
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            policy.check(access, has_header=header is not None)
    else:
        policy.check(access, has_header=header is not None)
        assert access.key_name == outcome


async def test_auth_reads_protects_every_endpoint_but_the_probes(settings: Settings, tiny_models: TinyModels) -> None:
    query = unit_query(tiny_models.card.embedding_dim)
    async with serve(with_settings(settings, auth_reads=True, **KEYS)) as (_, client):
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 200
        reads = [
            ("GET", "/gallery", {}),
            ("GET", "/gallery/1", {}),
            ("GET", "/metrics", {}),
            ("GET", "/docs", {}),
            ("GET", "/redoc", {}),
            ("GET", "/openapi.json", {}),
            ("POST", "/embed", {"params": {"modality": "vis"}, "files": files(image_bytes(1))}),
            ("POST", "/search", {"params": {"modality": "ir"}, "json": query}),
        ]
        for method, path, kwargs in reads:
            assert_error(await client.request(method, path, **kwargs), 401, "unauthorized")
            wrong = {"X-API-Key": "r-s3cre"}
            assert_error(await client.request(method, path, headers=wrong, **kwargs), 401, "unauthorized")
            for key in (READ, WRITE):
                expected = 404 if path == "/gallery/1" else 200
                assert (await client.request(method, path, headers=key, **kwargs)).status_code == expected, path

        add = {"params": {"modality": "vis"}, "files": files(image_bytes(2))}
        assert_error(await client.post("/gallery", **add), 401, "unauthorized")  # type: ignore[arg-type]
        detail = assert_error(await client.post("/gallery", headers=READ, **add), 403, "forbidden")  # type: ignore[arg-type]
        assert "read-only" in detail
        added = await client.post("/gallery", headers=WRITE, **add)  # type: ignore[arg-type]
        assert added.status_code == 201
        (item_id,) = added.json()["ids"]
        assert_error(await client.delete(f"/gallery/{item_id}"), 401, "unauthorized")
        assert_error(await client.delete(f"/gallery/{item_id}", headers=READ), 403, "forbidden")
        assert (await client.get(f"/gallery/{item_id}", headers=READ)).json()["id"] == item_id
        assert (await client.get("/gallery", headers=READ)).json()["total"] == 1
        assert (await client.delete(f"/gallery/{item_id}", headers=WRITE)).status_code == 204
        spec = (await client.get("/openapi.json", headers=READ)).json()
        assert "X-API-Key" in str(spec["components"]["securitySchemes"])


async def test_the_read_key_cannot_write_even_with_reads_open(settings: Settings) -> None:
    async with serve(with_settings(settings, **KEYS)) as (_, client):
        assert (await client.get("/gallery")).status_code == 200
        assert (await client.post("/embed", params={"modality": "ir"}, files=files(image_bytes(1)))).status_code == 200
        add = {"params": {"modality": "vis"}, "files": files(image_bytes(2))}
        assert_error(await client.post("/gallery", headers=READ, **add), 403, "forbidden")  # type: ignore[arg-type]
        assert_error(await client.post("/gallery", **add), 401, "unauthorized")  # type: ignore[arg-type]
        assert (await client.get("/gallery")).json()["total"] == 0


@pytest.mark.parametrize(
    ("changes", "method", "path", "params"),
    [
        ({"api_key": "w-s3cret"}, "POST", "/gallery", {"modality": "vis"}),
        ({"auth_reads": True, **KEYS}, "POST", "/embed", {"modality": "vis"}),
        ({"auth_reads": True, **KEYS}, "POST", "/search", {"modality": "ir"}),
    ],
)
async def test_the_key_is_checked_before_the_body_is_read(
    settings: Settings, changes: dict[str, object], method: str, path: str, params: dict[str, str]
) -> None:
    """An unauthenticated upload is refused without reading a byte of it."""
    chunks_read = 0
    body = files(image_bytes(3))

    async def upload() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        request = httpx.Request("POST", "http://x/", files=body)
        for chunk in request.stream:  # type: ignore[union-attr]
            chunks_read += 1
            yield chunk

    content_type = httpx.Request("POST", "http://x/", files=body).headers["Content-Type"]
    async with serve(with_settings(settings, **changes)) as (_, client):
        response = await client.request(
            method, path, params=params, content=upload(), headers={"Content-Type": content_type}
        )
        assert_error(response, 401, "unauthorized")
    assert chunks_read == 0


async def test_a_write_route_the_middleware_took_for_a_read_fails_instead_of_skipping_the_key(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The write routes' dependency refuses to run unless the middleware checked the request as a write."""
    async with serve(with_settings(settings, api_key="w-s3cret")) as (app, client):

        async def misfiled() -> dict[str, str]:
            return {"secret": "changed"}

        app.add_api_route("/misfiled", misfiled, methods=["GET"], dependencies=[WRITE_ACCESS])  # GET: a read
        with caplog.at_level(logging.ERROR):
            r = await client.get("/misfiled", headers=WRITE)
        assert r.status_code == 500 and r.json()["error"] == "internal_error" and "changed" not in r.text
        assert "GET /misfiled is a write route, but service.auth saw" in caplog.text


def test_uvicorn_answers_401_before_the_body_is_sent(settings: Settings) -> None:
    """Over a real socket: the refusal arrives while the declared 1 MB upload has not been sent at all."""
    protected = with_settings(settings, auth_reads=True, **KEYS)
    with uvicorn_server(create_app(protected)) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
            head = (
                "POST /embed?modality=vis HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
            )
            sock.sendall(head.encode())  # no body follows: a server waiting for it would never answer
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(4096)
                assert chunk, f"connection closed after {answer!r}"
                answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized"
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "unauthorized"

"""Helpers for the service tests: ONNX metadata edits, images, the app in process or behind real uvicorn."""

from __future__ import annotations

import io
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import numpy as np
import onnx
import uvicorn
from fastapi import FastAPI
from PIL import Image

from common.model_card import ModelCard
from service.settings import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_card(path: Path) -> ModelCard:
    """The ModelCard stored in an ONNX file's metadata."""
    proto = onnx.load(str(path), load_external_data=False)
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


def set_card(path: Path, card: ModelCard) -> None:
    """Replace the ModelCard metadata of an ONNX file."""
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, card.to_metadata())
    onnx.save(proto, str(path))


def image_bytes(seed: int, size: tuple[int, int] = (24, 48), mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """A random image of ``size`` (width, height) encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def corrupt_exif_jpeg(seed: int, size: tuple[int, int] = (24, 48)) -> bytes:
    """A JPEG with EXIF Orientation=6 whose IFD holds text under ImageWidth, a numeric tag.

    Pillow reads the orientation, but re-encoding that EXIF block (what ``ImageOps.exif_transpose`` does after
    rotating) raises ``struct.error``.
    """
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    exif[0x010F] = "Cam"  # Make (ASCII): its tag is rewritten below
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    data = bytearray(buf.getvalue())
    tiff = data.index(b"Exif\0\0") + 6
    order = "<" if data[tiff : tiff + 2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, tiff + 4)
    (count,) = struct.unpack_from(order + "H", data, tiff + ifd)
    for entry in range(tiff + ifd + 2, tiff + ifd + 2 + 12 * count, 12):
        (tag,) = struct.unpack_from(order + "H", data, entry)
        if tag == 0x010F:
            struct.pack_into(order + "H", data, entry, 0x0100)  # ImageWidth, holding "Cam"
            return bytes(data)
    raise AssertionError("the Make entry was not written")


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real app with its lifespan run, and an in-process client talking to it."""
    from service.app import create_app  # noqa: PLC0415  (tests of the encoder need no app)

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            yield app, client


def with_settings(settings: Settings, **changes: object) -> Settings:
    """A validated copy of ``settings`` with ``changes``."""
    return Settings(**{**settings.model_dump(), **changes})


def files(*payloads: bytes, field: str = "files") -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart ``files=`` argument for httpx, one entry per payload."""
    return [(field, (f"img{i}.png", data, "image/png")) for i, data in enumerate(payloads)]


@contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with real uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL.

    The socket listens before the thread starts, so a first request simply waits in the backlog until the
    lifespan has loaded everything: no polling, no sleeps.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"

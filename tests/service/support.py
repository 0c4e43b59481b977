"""Helpers for the service tests: tiny ONNX encoders following the export contract, images, a running app.

The encoders are a small conv net exported exactly as docs/architecture.md ("ONNX artefacts") says: input
``images`` float32 (N, 3, H, W) in [0, 1] with a dynamic batch axis, normalisation inside the graph, output
``embeddings`` L2-normalised, the ModelCard in the metadata, files named by ``encoder_filename``.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import numpy as np
import onnx
import torch
import uvicorn
from fastapi import FastAPI
from PIL import Image
from torch import Tensor, nn

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ModelCard
from common.preprocess import IMAGENET_MEAN, IMAGENET_STD
from service.settings import Settings

HEIGHT, WIDTH, DIM = 64, 32, 16
MODEL_VERSION = "0123456789ab"


class TinyEncoder(nn.Module):
    """[0, 1] images -> normalise -> conv -> pool -> linear -> L2-normalise."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 4, DIM)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        x = torch.relu(self.conv((images - self.mean) / self.std))
        x = nn.functional.adaptive_avg_pool2d(x, (2, 2)).flatten(1)
        return nn.functional.normalize(self.fc(x), dim=1)


def card_for(modality: Modality, model_version: str = MODEL_VERSION, dim: int = DIM) -> ModelCard:
    """The ModelCard the tiny encoders carry."""
    return ModelCard(
        input_height=HEIGHT,
        input_width=WIDTH,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=dim,
        modality=modality,
        model_version=model_version,
        experiment="service-test",
        git_sha="testsha",
    )


def export_tiny(net: nn.Module, card: ModelCard, path: Path) -> None:
    """Export ``net`` with a dynamic batch axis and attach ``card`` as metadata."""
    example = torch.rand(2, 3, card.input_height, card.input_width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.onnx.export(
            net.eval(),
            (example,),
            str(path),
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=4096)}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    set_card(path, card)


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

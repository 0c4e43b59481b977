"""Request dependencies as ``Annotated`` aliases, one per thing a route touches.

The loaded pieces (``GalleryDep``, ``EmbedderDep``, ``EncodersDep``, ``ModelDep``) answer 503 ``not_ready``
before the lifespan finished loading and after shutdown began; ``SettingsDep``, ``MetricsDep`` and
``GalleryIfLoadedDep`` work at any time. All are ``async def``: FastAPI would run a plain ``def``
dependency in a worker thread, a hop per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from common.modality import MODALITY_NAMES, Modality
from index.base import Gallery
from service.auth import API_KEY_HEADER, request_access
from service.embedder import Embedder
from service.encoder import OnnxEncoder
from service.errors import BadParameterError, NotReadyError
from service.metrics import Metrics
from service.runtime import ModelIdentity, Runtime
from service.settings import Settings

_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="needed for writes when an API key is set, and for reads too with VIREID_AUTH_READS=true",
)


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_runtime_or_none(request: Request) -> Runtime | None:
    """What the lifespan loaded, or None before it finished loading and after shutdown began."""
    runtime: Runtime | None = request.app.state.runtime
    return runtime


_RuntimeOrNoneDep = Annotated[Runtime | None, Depends(get_runtime_or_none)]


async def get_runtime(runtime: _RuntimeOrNoneDep) -> Runtime:
    """What the lifespan loaded; 503 before it finished loading or after shutdown began."""
    if runtime is None:
        raise NotReadyError("the service is not ready: encoders and gallery are not loaded (starting or stopping)")
    return runtime


_RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_gallery(runtime: _RuntimeDep) -> Gallery:
    """The gallery."""
    return runtime.gallery


async def get_gallery_if_loaded(runtime: _RuntimeOrNoneDep) -> Gallery | None:
    """The gallery, or None while it is not loaded."""
    return runtime.gallery if runtime is not None else None


async def get_embedder(runtime: _RuntimeDep) -> Embedder:
    """The embedder: uploads to embeddings through the encoders' micro-batchers."""
    return runtime.embedder


async def get_encoders(runtime: _RuntimeDep) -> Mapping[Modality, OnnxEncoder]:
    """The encoder of each modality."""
    return runtime.encoders


async def get_model(runtime: _RuntimeDep) -> ModelIdentity:
    """Version and embedding dimension of the loaded model."""
    return runtime.model


def parse_modality(value: str, name: str = "modality") -> Modality:
    """A modality from its wire value or alias; 400 otherwise."""
    try:
        return Modality.parse(value)
    except ValueError as exc:
        raise BadParameterError(f"{name}: {exc}") from exc


async def query_modality(
    modality: Annotated[
        str,
        Query(
            description="modality of the uploaded images: vis|ir (aliases accepted; case and padding ignored)",
            json_schema_extra={"enum": list(MODALITY_NAMES)},
            openapi_examples={"visible": {"value": "vis"}, "infrared": {"value": "ir"}},
        ),
    ],
) -> Modality:
    """The required ``modality`` query parameter."""
    return parse_modality(modality)


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
GalleryDep = Annotated[Gallery, Depends(get_gallery)]
GalleryIfLoadedDep = Annotated[Gallery | None, Depends(get_gallery_if_loaded)]
EmbedderDep = Annotated[Embedder, Depends(get_embedder)]
EncodersDep = Annotated[Mapping[Modality, OnnxEncoder], Depends(get_encoders)]
ModelDep = Annotated[ModelIdentity, Depends(get_model)]
ModalityDep = Annotated[Modality, Depends(query_modality)]


async def require_write_access(request: Request, _key: Annotated[str | None, Security(_api_key_scheme)] = None) -> None:
    """Check that ``service.auth.AuthMiddleware`` let this request through as a write (it checks the key).

    The middleware decides before the body is read, from the method and path alone; a write route it took
    for a read would skip the write key, so that mismatch is a server error rather than an open door.
    """
    access = request_access(request.scope)
    if access is None or access.kind != "write":
        raise RuntimeError(f"{request.method} {request.url.path} is a write route, but service.auth saw {access}")


WRITE_ACCESS = Depends(require_write_access)

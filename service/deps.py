"""Request dependencies as ``Annotated`` aliases, one per thing a route touches.

The loaded pieces (``GalleryDep``, ``EmbedderDep``, ``EncodersDep``, ``ModelDep``) answer 503 ``not_ready``
before the lifespan finished loading and after shutdown began; ``SettingsDep``, ``MetricsDep`` and
``GalleryIfLoadedDep`` work at any time. All are ``async def``: FastAPI would run a plain ``def``
dependency in a worker thread, a hop per request.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from common.modality import Modality
from index.base import Gallery
from service.embedder import Embedder
from service.encoder import OnnxEncoder
from service.errors import BadParameterError, NotReadyError, UnauthorizedError
from service.metrics import Metrics
from service.runtime import ModelIdentity, Runtime
from service.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="required for writes when VIREID_API_KEY is set"
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
            description="modality of the uploaded images: vis|ir (visible|infrared accepted)",
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


async def require_api_key(settings: SettingsDep, key: Annotated[str | None, Security(_api_key_scheme)] = None) -> None:
    """Let a write through only with the configured API key (every request passes when none is configured)."""
    expected = settings.api_key
    if expected is None:
        return
    if key is None:
        raise UnauthorizedError(f"this write needs the {API_KEY_HEADER} header (the service has an API key set)")
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise UnauthorizedError(f"wrong {API_KEY_HEADER}")


WRITE_ACCESS = Depends(require_api_key)

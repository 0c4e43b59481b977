"""Request dependencies as ``Annotated`` aliases: the loaded runtime, settings, metrics, modality, API key.

All are ``async def``: FastAPI would run a plain ``def`` dependency in a worker thread, a hop per request.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from common.modality import Modality
from index.base import Gallery
from service.errors import BadParameterError, NotReadyError, UnauthorizedError
from service.metrics import Metrics
from service.runtime import Runtime
from service.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="required for writes when VIREID_API_KEY is set"
)


async def get_runtime(request: Request) -> Runtime:
    """The loaded runtime; 503 before the lifespan finished loading or after shutdown began."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotReadyError("the service is not ready: encoders and gallery are not loaded (starting or stopping)")
    return runtime


async def get_gallery(request: Request) -> Gallery:
    """The gallery of the loaded runtime."""
    return (await get_runtime(request)).gallery


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


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


async def require_api_key(request: Request, key: Annotated[str | None, Security(_api_key_scheme)] = None) -> None:
    """Let a write through only with the configured API key (every request passes when none is configured)."""
    expected = (await get_settings(request)).api_key
    if expected is None:
        return
    if key is None:
        raise UnauthorizedError(f"this write needs the {API_KEY_HEADER} header (the service has an API key set)")
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise UnauthorizedError(f"wrong {API_KEY_HEADER}")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
GalleryDep = Annotated[Gallery, Depends(get_gallery)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModalityDep = Annotated[Modality, Depends(query_modality)]
WRITE_ACCESS = Depends(require_api_key)

"""Exceptions to HTTP: one table, one handler per entry, every error as ``{"error": code, "detail": message}``.

Statuses: 400 bad parameter value, 401 missing/wrong API key where one is needed, 403 the read-only key on a
write, 404 unknown gallery id or route, 413 body over ``max_body_bytes`` (checked from Content-Length and while
reading) or an image over ``max_image_pixels`` (decompression-bomb guard: the header is checked before decoding) or
the images of a request over ``max_request_pixels`` in all (headers again),
415 not a decodable image or a Content-Type no route at that path and method takes, 422 request validation
(FastAPI's, reshaped), 503 encoders or gallery not loaded, or the encoder queue full (``max_queue``) or its wait
over (``encode_timeout_s``), these two with a ``Retry-After`` header, or the gallery's store (Milvus) unreachable
(``gallery_unavailable``, naming the reason).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from common.preprocess import ImageDecodeError, ImageTooLargeError
from index.errors import GalleryUnavailableError, InvalidEmbeddingError, ItemNotFoundError
from service.batching import BatcherClosedError, EncoderBusyError, EncodeTimeoutError, OverloadedError

logger = logging.getLogger(__name__)


class BadParameterError(ValueError):
    """A request parameter has a value the service cannot use (unknown modality, wrong embedding length, ...)."""


class TooManyFilesError(BadParameterError):
    """A request carries more image files than ``max_files_per_request``."""


class UnauthorizedError(Exception):
    """A request that needs an API key came without a valid one."""


class ForbiddenError(Exception):
    """A valid key that does not allow this request: the read-only key on a write."""


class UnsupportedMediaTypeError(ValueError):
    """The request body has a content type the endpoint does not take."""


class NotReadyError(RuntimeError):
    """Encoders or gallery are not loaded (startup not finished, or shutting down)."""


class RequestTooLargeError(ValueError):
    """The images of one request sum to more pixels than ``max_request_pixels`` (read from their headers)."""


class BodyTooLargeError(StarletteHTTPException):
    """The request body exceeds ``max_body_bytes``; an HTTPException so FastAPI's body reader re-raises it."""

    def __init__(self, limit: int) -> None:
        """Say what the limit is."""
        super().__init__(status_code=413, detail=f"request body exceeds the limit of {limit} bytes")


HTTP_ERRORS: dict[type[Exception], tuple[int, str]] = {
    BadParameterError: (400, "bad_parameter"),
    TooManyFilesError: (400, "too_many_files"),
    InvalidEmbeddingError: (400, "invalid_embedding"),
    UnauthorizedError: (401, "unauthorized"),
    ForbiddenError: (403, "forbidden"),
    ItemNotFoundError: (404, "not_found"),
    BodyTooLargeError: (413, "body_too_large"),
    ImageTooLargeError: (413, "image_too_large"),
    RequestTooLargeError: (413, "request_too_large"),
    ImageDecodeError: (415, "unsupported_image"),
    UnsupportedMediaTypeError: (415, "unsupported_media_type"),
    RequestValidationError: (422, "validation_error"),
    NotReadyError: (503, "not_ready"),
    BatcherClosedError: (503, "not_ready"),
    OverloadedError: (503, "overloaded"),
    EncodeTimeoutError: (503, "encode_timeout"),
    GalleryUnavailableError: (503, "gallery_unavailable"),
}

_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    """The JSON error body every failure uses."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _message(exc: Exception) -> str:
    if isinstance(exc, StarletteHTTPException):
        return str(exc.detail)
    if isinstance(exc, RequestValidationError):
        return format_validation_errors(exc.errors())
    return str(exc.args[0]) if exc.args else type(exc).__name__  # KeyError's str() would add quotes


def format_validation_errors(errors: Sequence[Any]) -> str:
    """One line per pydantic error: ``location: message``."""
    parts = []
    for err in errors:
        loc = ".".join(str(part) for part in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return "; ".join(parts)


def allowed_methods(routes: Sequence[BaseRoute], path: str) -> list[str]:
    """The methods the routes at ``path`` take, sorted (what a 405's ``Allow`` header lists)."""
    methods: set[str] = set()
    for route in iter_route_contexts(routes):
        regex: re.Pattern[str] | None = getattr(route, "path_regex", None)
        if regex is not None and regex.fullmatch(path):
            methods |= route.methods or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register one handler per ``HTTP_ERRORS`` entry, plus Starlette's HTTP errors and a catch-all 500."""

    def make_handler(status: int, code: str) -> Any:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            response = error_response(status, code, _message(exc))
            if isinstance(exc, EncoderBusyError):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response

        return handler

    for exc_type, (status, code) in HTTP_ERRORS.items():
        app.add_exception_handler(exc_type, make_handler(status, code))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:  # Starlette's Allow names the first route's methods only
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app.routes, request.url.path))}
        return JSONResponse({"error": code, "detail": _message(exc)}, status_code=exc.status_code, headers=headers)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error; see the service log")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)

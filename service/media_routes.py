"""Several routes at one path and method, told apart by the request's media type (a multipart and a JSON body).

FastAPI decides statically whether a route parses a form or JSON, so one endpoint cannot take both. Declare one
endpoint per body on a router with ``route_class=MediaTypeRoute``: a route matches fully only a request whose
Content-Type is its declared body's media type; a hit on its path and method with another type is a partial
match, and when no route matched fully the partial one answers 415 ``unsupported_media_type`` naming the types
the routes there accept. ``document_shared_operations`` makes the OpenAPI schema show such routes as one
operation whose ``requestBody.content`` holds every route's body.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.params import Body
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from service.errors import UnsupportedMediaTypeError

# Scope key under which the routes of a path and method that refused the request's media type list theirs.
ACCEPTED_MEDIA_TYPES = "vireid.accepted_media_types"


def request_media_type(scope: Scope) -> str:
    """The request's Content-Type without parameters, in lower case ("" when there is none)."""
    return Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()


class MediaTypeRoute(APIRoute):
    """An ``APIRoute`` that matches only requests whose Content-Type is the media type of its declared body."""

    @property
    def media_type(self) -> str | None:
        """Media type of the declared body (``application/json``, ``multipart/form-data``...); None without one."""
        if self.body_field is None:
            return None
        return cast(Body, self.body_field.field_info).media_type

    def refuses(self, scope: Scope) -> bool:
        """True when the route has a body and the request's Content-Type is not its media type."""
        return self.media_type is not None and request_media_type(scope) != self.media_type

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, downgraded to partial (noting the accepted type in the scope) on another media type."""
        match, child_scope = super().matches(scope)
        if match is Match.FULL and self.refuses(scope):
            accepted: dict[str, None] = scope.setdefault(ACCEPTED_MEDIA_TYPES, {})  # an ordered set
            accepted[cast(str, self.media_type)] = None
            return Match.PARTIAL, child_scope
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the endpoint; 415 when chosen as a partial match for the request's method (no route took its type)."""
        if scope["method"] in (self.methods or ()) and self.refuses(scope):
            got = request_media_type(scope) or "(none)"
            accepted = " or ".join(scope.get(ACCEPTED_MEDIA_TYPES, {self.media_type: None}))
            raise UnsupportedMediaTypeError(f"content type {got!r}: {scope['method']} {scope['path']} takes {accepted}")
        await super().handle(scope, receive, send)


def document_shared_operations(app: FastAPI) -> None:
    """Make ``app.openapi()`` document the routes sharing a path and method as one operation with all their bodies.

    FastAPI's schema keeps only the last of them; this replaces that operation by the first route's, whose
    ``requestBody.content`` merges every route's (in route order), each generated from the declared models.
    """
    generate = app.openapi
    merged: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal merged
        schema = generate()  # cached by FastAPI until the routes change
        if schema is not merged:
            _merge_shared_operations(schema, app)
            merged = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend its schema


def _merge_shared_operations(schema: dict[str, Any], app: FastAPI) -> None:
    """Rewrite, in ``schema``, each operation several of ``app``'s routes share (see ``document_shared_operations``)."""
    for (path, method), routes in _shared_operations(app.routes).items():
        alone = [_schema_of(app, route) for route in routes]
        operations = [s["paths"][path][method] for s in alone]
        schema["paths"][path][method] = {**operations[0], "requestBody": _merged_request_body(operations)}
        for s in alone:  # the schemas the bodies refer to
            for section, entries in s.get("components", {}).items():
                known = schema.setdefault("components", {}).setdefault(section, {})
                for name, entry in entries.items():
                    known.setdefault(name, entry)


def _shared_operations(routes: list[BaseRoute]) -> dict[tuple[str, str], list[RouteContext]]:
    """The documented API routes grouped by (path, lower-case method), only the groups of two or more."""
    groups: dict[tuple[str, str], list[RouteContext]] = {}
    for route in iter_route_contexts(routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            for method in sorted(route.methods or ()):
                groups.setdefault((cast(str, route.path_format), method.lower()), []).append(route)
    return {key: group for key, group in groups.items() if len(group) > 1}


def _schema_of(app: FastAPI, route: RouteContext) -> dict[str, Any]:
    return get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        routes=[route],
        separate_input_output_schemas=app.separate_input_output_schemas,
    )


def _merged_request_body(operations: list[dict[str, Any]]) -> dict[str, Any]:
    bodies = [op.get("requestBody", {}) for op in operations]
    merged: dict[str, Any] = {"content": {media: c for b in bodies for media, c in b.get("content", {}).items()}}
    if all(b.get("required") for b in bodies):
        merged["required"] = True
    return merged

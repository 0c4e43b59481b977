"""The OpenAPI document as the service really behaves: every error status each operation can answer, the
embedding length of the loaded model, the configured number of files an upload may carry.

FastAPI documents what the routes declare; the middlewares add statuses no route declares (401/403 from
``service.auth``, 413 from ``service.limits``, 500 from ``service.internal_errors``), and the embedding length is
known only once the lifespan has loaded the model. ``document_api`` completes the generated document with them
and with ``max_files_per_request``, one document per loaded model (and one, saying so, while none is loaded).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from service.auth import classify
from service.runtime import Runtime
from service.schemas import error_response_entry
from service.settings import Settings

UPLOAD_BODIES = ("Body_embed_embed_post", "Body_add_items_gallery_post")  # their ``files`` lists
SEARCH_BODY = "Body_search_search_post"  # its ``file`` list: one image, or the crops of a tracklet
ANY_OPERATION = (413, 500)  # the body limit and the kept-alive 500 apply to every request
NOT_LOADED = "the model is not loaded yet, so its embedding_dim is unknown here; see /readyz, or reload this document"


def document_api(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the generated document completed as the module docstring says."""
    generate = app.openapi
    documents: dict[int | None, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        runtime: Runtime | None = app.state.runtime
        settings: Settings = app.state.settings
        dim = runtime.model.embedding_dim if runtime is not None else None
        if dim not in documents:
            documents[dim] = completed(copy.deepcopy(generate()), dim, settings.max_files_per_request)
        return documents[dim]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend its schema


def completed(schema: dict[str, Any], dim: int | None, max_files: int) -> dict[str, Any]:
    """``schema`` with the middlewares' error statuses, the embedding length ``dim`` and ``max_files`` per upload."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = [*ANY_OPERATION, *_auth_statuses(method.upper(), path)]
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(str(status), error_response_entry(status))
    for body in UPLOAD_BODIES:
        schema["components"]["schemas"][body]["properties"]["files"]["maxItems"] = max_files
    schema["components"]["schemas"][SEARCH_BODY]["properties"]["file"]["maxItems"] = max_files
    embedding = schema["components"]["schemas"]["EmbeddingQuery"]["properties"]["embedding"]
    if dim is None:
        embedding["description"] = f"L2-normalised, embedding_dim values ({NOT_LOADED})"
    else:
        embedding.update(minItems=dim, maxItems=dim, description=f"L2-normalised, {dim} values (this model's)")
    return schema


def _auth_statuses(method: str, path: str) -> list[int]:
    kind = classify(method, path)
    return {"open": [], "read": [401], "write": [401, 403]}[kind]

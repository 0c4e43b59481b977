"""POST /search: rank gallery items against a query image or a query embedding."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from common.modality import Modality
from index.base import SearchFilter
from service.deps import EmbedderDep, GalleryDep, MetricsDep, ModalityDep, ModelDep, SettingsDep, parse_modality
from service.embedder import Embedder
from service.errors import BadParameterError, UnsupportedMediaTypeError
from service.images import read_uploads
from service.schemas import EmbeddingQuery, MatchOut, SearchResponse, error_responses

router = APIRouter(tags=["search"])

NORM_TOLERANCE = 1e-3
ALL_MODALITIES = ("any", "all")

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "description": "the query image"}},
            }
        },
        "application/json": {
            "schema": EmbeddingQuery.model_json_schema(),
            "examples": {"embedding": {"value": {"embedding": [0.5, 0.5, 0.5, 0.5]}}},
        },
    },
}


def parse_target(target: str | None, query: Modality) -> Modality | None:
    """Modality to search: the other one by default, ``any``/``all`` for every modality."""
    if target is None:
        return query.other
    if target.strip().lower() in ALL_MODALITIES:
        return None
    return parse_modality(target, name="target")


def check_embedding(values: list[float], dim: int) -> np.ndarray:
    """A query embedding as float32 ``(1, dim)``; 400 unless it has ``dim`` finite values of unit L2 norm."""
    q = np.asarray(values, dtype=np.float32)
    if q.shape != (dim,):
        raise BadParameterError(f"embedding has {q.shape[0]} values; this model's embeddings have {dim}")
    if not np.all(np.isfinite(q)):
        raise BadParameterError("embedding has non-finite values")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise BadParameterError(
            f"embedding has L2 norm {norm:.4f}; send an L2-normalised embedding (as /embed returns)"
        )
    return q.reshape(1, dim)


async def _query_from_json(request: Request, dim: int) -> np.ndarray:
    try:
        body = EmbeddingQuery.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc
    return check_embedding(body.embedding, dim)


async def _query_from_image(request: Request, embedder: Embedder, modality: Modality) -> np.ndarray:
    async with request.form(max_files=1, max_fields=0) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", "file"), "msg": "Field required (the query image)", "input": None}]
            )
        uploads = await read_uploads([file], max_files=1)
    return await embedder.embed(modality, uploads, endpoint="search")


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search the gallery with an image or an embedding",
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses=error_responses(400, 413, 415, 422, 503),
)
async def search(
    request: Request,
    gallery: GalleryDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
    model: ModelDep,
    settings: SettingsDep,
    modality: ModalityDep,
    top_k: Annotated[int | None, Query(ge=1, description="matches to return (default VIREID_DEFAULT_TOP_K)")] = None,
    target: Annotated[
        str | None, Query(description="modality to search: vis|ir|any (default: the other one)", examples=["vis"])
    ] = None,
    min_score: Annotated[float | None, Query(ge=-1.0, le=1.0, description="drop matches scoring below")] = None,
    label: Annotated[str | None, Query(description="only items with this label")] = None,
    camera: Annotated[str | None, Query(description="only items from this camera")] = None,
) -> SearchResponse:
    """Ranked matches, best first. Send the query image as multipart field `file`, or JSON `{"embedding": [...]}`.

    Example: `curl -F file=@ir_crop.jpg 'http://localhost:8000/search?modality=ir&top_k=5'`
    """
    k = top_k if top_k is not None else settings.default_top_k
    if k > settings.max_top_k:
        raise BadParameterError(f"top_k={k} exceeds the limit of {settings.max_top_k}")
    searched = parse_target(target, modality)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        query = await _query_from_json(request, model.embedding_dim)
    elif media == "multipart/form-data":
        query = await _query_from_image(request, embedder, modality)
    else:
        raise UnsupportedMediaTypeError(
            f"content type {media or '(none)'!r}: send multipart/form-data with a `file`, or application/json"
        )
    where = SearchFilter(modality=searched, label=label, camera=camera, min_score=min_score)
    with metrics.time("search"):
        results = await run_in_threadpool(gallery.search, query, k, where)
    return SearchResponse(
        query_modality=modality,
        target_modality=searched,
        model_version=model.model_version,
        top_k=k,
        matches=[MatchOut.of(m) for m in results[0]],
    )

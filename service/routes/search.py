"""POST /search: rank gallery items against a query image (multipart) or a query embedding (JSON).

The two bodies are two endpoints at the same path and method, told apart by Content-Type (``MediaTypeRoute``)
and documented as one operation (``service.media_routes.document_shared_operations``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, File, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from common.modality import MODALITY_NAMES, Modality
from index.base import Gallery, SearchFilter
from index.embeddings import NORM_TOLERANCE
from index.fusion import FusionError, fuse_embeddings
from index.kreciprocal import KReciprocalParams
from index.reranked_search import reranked_search
from service.deps import EmbedderDep, GalleryDep, MetricsDep, ModalityDep, ModelDep, SettingsDep, parse_modality
from service.errors import BadParameterError
from service.images import read_uploads
from service.media_routes import MediaTypeRoute
from service.metrics import Metrics
from service.runtime import ModelIdentity
from service.same_person import judged
from service.schemas import EMBEDDING_QUERY_EXAMPLE, EmbeddingQuery, MatchOut, SearchResponse, error_responses

router = APIRouter(tags=["search"], route_class=MediaTypeRoute)

ALL_MODALITIES = ("any", "all")
_OPERATION: dict[str, Any] = {
    "response_model": SearchResponse,
    "summary": "Search the gallery with an image or an embedding",
    "responses": error_responses(400, 413, 415, 422, 503),
}


@dataclass(frozen=True)
class SearchQuery:
    """What a search asks for besides the query itself: its modality, how many matches, which items."""

    modality: Modality
    top_k: int
    where: SearchFilter
    rerank: KReciprocalParams | None = None  # k-reciprocal re-ranking asked for (rerank=true), with the settings'
    rerank_candidates: int = 0


def parse_target(target: str | None, query: Modality) -> Modality | None:
    """Modality to search: the other one by default, ``any``/``all`` for every modality."""
    if target is None:
        return query.other
    if target.strip().lower() in ALL_MODALITIES:
        return None
    return parse_modality(target, name="target")


def check_embedding(values: list[float], dim: int) -> np.ndarray:
    """A query embedding as float32 ``(1, dim)``; 400 unless it has ``dim`` float32-finite values of unit L2 norm."""
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused just below
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


async def search_query(
    settings: SettingsDep,
    modality: ModalityDep,
    top_k: Annotated[int | None, Query(ge=1, description="matches to return (default VIREID_DEFAULT_TOP_K)")] = None,
    target: Annotated[
        str | None,
        Query(
            description="modality to search: vis|ir|any (default: the other one; case and padding ignored)",
            examples=["vis"],
            json_schema_extra={"enum": [*MODALITY_NAMES, *ALL_MODALITIES]},
        ),
    ] = None,
    min_score: Annotated[float | None, Query(ge=-1.0, le=1.0, description="drop matches scoring below")] = None,
    label: Annotated[str | None, Query(description="only items with this label")] = None,
    camera: Annotated[str | None, Query(description="only items from this camera")] = None,
    rerank: Annotated[
        bool,
        Query(
            description="order the matches by k-reciprocal re-ranking over the best VIREID_RERANK_CANDIDATES and "
            "their gallery neighbours (scores stay the original similarities)"
        ),
    ] = False,
) -> SearchQuery:
    """The query parameters both forms of /search take; 400 on a top_k over the limit or an unknown target."""
    k = top_k if top_k is not None else settings.default_top_k
    if k > settings.max_top_k:
        raise BadParameterError(f"top_k={k} exceeds the limit of {settings.max_top_k}")
    where = SearchFilter(modality=parse_target(target, modality), label=label, camera=camera, min_score=min_score)
    if not rerank:
        return SearchQuery(modality=modality, top_k=k, where=where)
    params = KReciprocalParams(k1=settings.rerank_k1, k2=settings.rerank_k2, lam=settings.rerank_lambda)
    return SearchQuery(modality, k, where, rerank=params, rerank_candidates=settings.rerank_candidates)


SearchQueryDep = Annotated[SearchQuery, Depends(search_query)]


async def matches_for(query: SearchQuery, vector: np.ndarray, gallery: Gallery) -> list[MatchOut]:
    """The matches of ``vector`` (float32 ``(1, D)``), re-ranked when ``query.rerank`` is set (in a thread)."""
    if query.rerank is None:
        results = await run_in_threadpool(gallery.search, vector, query.top_k, query.where)
        return [MatchOut.of(m) for m in results[0]]
    found = await run_in_threadpool(
        reranked_search, gallery, vector, query.top_k, query.where, query.rerank, query.rerank_candidates
    )
    return [MatchOut.of(r.match).model_copy(update={"rerank_distance": r.distance}) for r in found]


async def ranked(
    query: SearchQuery,
    vector: np.ndarray,
    gallery: Gallery,
    metrics: Metrics,
    model: ModelIdentity,
    query_images: int = 1,
) -> SearchResponse:
    """Search the gallery for ``vector`` (float32 ``(1, D)``) as ``query`` asks; the response body."""
    with metrics.time("search"):
        matches = await matches_for(query, vector, gallery)
    response = SearchResponse(
        query_modality=query.modality,
        target_modality=query.where.modality,
        model_version=model.model_version,
        top_k=query.top_k,
        matches=matches,
        query_images=query_images,
        reranked=query.rerank is not None,
    )
    return judged(response, model.same_person)


@router.post("/search", **_OPERATION, form_limits={"max_fields": 0})
async def search(
    gallery: GalleryDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
    model: ModelDep,
    settings: SettingsDep,
    query: SearchQueryDep,
    file: Annotated[
        list[UploadFile],
        File(min_length=1, description="the query image; several parts: crops of one person (a tracklet), fused"),
    ],
) -> SearchResponse:
    """Ranked matches, best first. Send the query image as multipart field `file`, or JSON `{"embedding": [...]}`.

    Several `file` parts (crops of one person, one modality) form one query: the mean of their normalised
    embeddings, renormalised. Example: `curl -F file=@ir_crop.jpg 'http://localhost:8000/search?modality=ir&top_k=5'`
    """
    uploads = await read_uploads(file, settings.max_files_per_request)
    embeddings = await embedder.embed(query.modality, uploads, endpoint="search")
    try:
        vector = fuse_embeddings(embeddings)
    except FusionError as exc:
        raise BadParameterError(f"the {len(uploads)} images cannot form one query: {exc}") from exc
    return await ranked(query, vector, gallery, metrics, model, query_images=len(uploads))


@router.post("/search", **_OPERATION)
async def search_by_embedding(
    gallery: GalleryDep,
    metrics: MetricsDep,
    model: ModelDep,
    query: SearchQueryDep,
    body: Annotated[EmbeddingQuery, Body(openapi_examples={"embedding": {"value": EMBEDDING_QUERY_EXAMPLE}})],
) -> SearchResponse:
    """Ranked matches for a query embedding (as /embed returns), sent as JSON `{"embedding": [...]}`."""
    vector = check_embedding(body.embedding, model.embedding_dim)
    return await ranked(query, vector, gallery, metrics, model)

"""Request and response bodies of the HTTP API (with the examples shown in the OpenAPI docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.modality import Modality
from common.providers import CPU_PROVIDER, CUDA_PROVIDER
from index.base import GalleryItem, Match

_ITEM_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "modality": "vis",
    "label": "0042",
    "camera": "cam1",
    "captured_at": "2024-05-01T08:30:00+00:00",
    "source": "0042_c1_0001.jpg",
    "sha256": "9f2c5b0e4a7d1c3b8e6f0a2d4c6b8e0f1a3c5e7d9b1f3a5c7e9d1b3f5a7c9e1d",
    "extra": {"site": "gate-3"},
    "added_at": "2024-05-01T08:31:12+00:00",
}
EMBEDDING_QUERY_EXAMPLE: dict[str, Any] = {"embedding": [0.5, 0.5, 0.5, 0.5]}
MAX_INT64 = 2**63 - 1  # item ids and offsets go to SQLite INTEGER (and FAISS ids): signed 64-bit


class ErrorResponse(BaseModel):
    """Every failure: a stable machine code and a message saying what to fix."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": "bad_parameter", "detail": "unknown modality"}]}
    )

    error: str
    detail: str


class EmbedResponse(BaseModel):
    """Embeddings of the uploaded images, in upload order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"modality": "ir", "model_version": "3f9c2a1b7d40", "dim": 4, "embeddings": [[0.5] * 4]}]
        }
    )

    modality: Modality
    model_version: str
    dim: int
    embeddings: list[list[float]]


class ItemMetadata(BaseModel):
    """Optional metadata of a gallery image (all fields optional)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"label": "0042", "camera": "cam1", "captured_at": "2024-05-01T08:30:00Z", "extra": {}}]
        },
    )

    label: str | None = Field(default=None, description="person identity label, if known")
    camera: str | None = Field(default=None, description="camera name or id")
    captured_at: datetime | None = Field(default=None, description="ISO 8601 time the image was taken")
    source: str | None = Field(
        default=None, description="where the image came from; defaults to the uploaded file name"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="free JSON object")


class GalleryItemOut(BaseModel):
    """A stored gallery entry."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ITEM_EXAMPLE]})

    id: int
    modality: Modality
    label: str | None
    camera: str | None
    captured_at: str | None
    source: str | None
    sha256: str | None
    extra: dict[str, Any]
    added_at: str

    @classmethod
    def of(cls, item: GalleryItem) -> GalleryItemOut:
        """Convert a gallery item by reading its attributes (the schema mirrors ``GalleryItem``)."""
        return cls.model_validate(item, from_attributes=True)


class AddResponse(BaseModel):
    """Ids of the items added, in upload order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"modality": "vis", "ids": [7, 8]}]})

    modality: Modality
    ids: list[int]


class GalleryPage(BaseModel):
    """One page of gallery items in id order, with the gallery size per modality."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [_ITEM_EXAMPLE], "offset": 0, "limit": 100, "total": 1, "counts": {"vis": 1, "ir": 0}}
            ]
        }
    )

    items: list[GalleryItemOut]
    offset: int
    limit: int
    total: int = Field(description="items matching the modality filter (all items without one)")
    counts: dict[Modality, int]


class EmbeddingQuery(BaseModel):
    """A search by a precomputed embedding (e.g. from /embed) instead of an image."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EMBEDDING_QUERY_EXAMPLE]})

    embedding: list[float] = Field(min_length=1, description="L2-normalised, embedding_dim values")


class MatchOut(BaseModel):
    """One search hit: inner product of normalised embeddings (larger = closer, in [-1, 1])."""

    id: int
    score: float
    metadata: GalleryItemOut
    rerank_distance: float | None = Field(
        default=None,
        description="k-reciprocal distance the match was ranked by (smaller = closer); null without rerank=true",
    )
    p_same: float | None = Field(
        default=None,
        description="probability that the match shows the query's person (cross-modal matches of a calibrated model)",
    )
    same_person: bool | None = Field(
        default=None, description="score at or above the threshold of VIREID_SAME_PERSON_FAR (null when p_same is)"
    )

    @classmethod
    def of(cls, match: Match) -> MatchOut:
        """Convert a gallery match."""
        return cls(id=match.item.id, score=match.score, metadata=GalleryItemOut.of(match.item))


class SearchResponse(BaseModel):
    """Ranked matches, best first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query_modality": "ir",
                    "target_modality": "vis",
                    "model_version": "3f9c2a1b7d40",
                    "top_k": 10,
                    "matches": [{"id": 7, "score": 0.83, "metadata": _ITEM_EXAMPLE}],
                }
            ]
        }
    )

    query_modality: Modality
    target_modality: Modality | None = Field(description="null when every modality was searched")
    model_version: str
    top_k: int
    matches: list[MatchOut]
    query_images: int = Field(
        default=1, description="images fused into the query (mean of their normalised embeddings); 1 for an embedding"
    )
    reranked: bool = Field(
        default=False,
        description="matches ordered by k-reciprocal re-ranking (rerank=true); score stays the original similarity",
    )


class SamePersonStatus(BaseModel):
    """Whether the model card carries a same-person calibration, and the threshold the configured FAR gives."""

    calibrated: bool
    far: float = Field(description="VIREID_SAME_PERSON_FAR: false-accept rate on the calibration's negative pairs")
    threshold: float | None = Field(default=None, description="smallest score judged the same person")
    identities: int | None = Field(default=None, description="held-out identities the calibration was fitted on")
    positive_pairs: int | None = None
    negative_pairs: int | None = None


class ReadyResponse(BaseModel):
    """Readiness: models and gallery loaded, with the execution providers actually in use."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "model_version": "3f9c2a1b7d40",
                    "embedding_dim": 2048,
                    "providers": {
                        "vis": [CUDA_PROVIDER, CPU_PROVIDER],
                        "ir": [CPU_PROVIDER],
                    },
                    "gallery": {"vis": 120, "ir": 0},
                    "batching": True,
                    "same_person": {
                        "calibrated": True,
                        "far": 0.01,
                        "threshold": 0.61,
                        "identities": 40,
                        "positive_pairs": 3000,
                        "negative_pairs": 117000,
                    },
                    "precision": "int8",
                }
            ]
        }
    )

    status: str
    model_version: str
    embedding_dim: int
    providers: dict[Modality, list[str]]
    gallery: dict[Modality, int]
    batching: bool
    same_person: SamePersonStatus
    precision: str = Field(default="fp32", description="arithmetic of the loaded encoders: fp32, fp16 or int8")


_ERROR_DESCRIPTIONS = {
    400: "bad parameter value",
    401: "no valid X-API-Key where one is needed (writes once a key is set; reads too with VIREID_AUTH_READS)",
    403: "the read-only API key on a write",
    404: "unknown gallery id",
    413: "body over the configured limit, or an image over the pixel limit (decompression-bomb guard)",
    415: "not a decodable image (or an unsupported content type)",
    422: "request validation failed",
    500: "unexpected server error (the service log says why)",
    503: "encoders or gallery not loaded",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the listed error statuses."""
    return {s: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[s]} for s in statuses}


def error_response_entry(status: int) -> dict[str, Any]:
    """The generated OpenAPI response object of an error status (as ``error_responses`` produces it)."""
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    return {"description": _ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": schema}}}

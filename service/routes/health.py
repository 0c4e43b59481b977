"""Liveness, readiness (models, gallery, providers in use) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.deps import EncodersDep, GalleryDep, GalleryIfLoadedDep, MetricsDep, ModelDep, SettingsDep
from service.metrics import refresh_gallery_gauge
from service.same_person import status as same_person_status
from service.schemas import ReadyResponse, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process answers HTTP (says nothing about models; see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness", responses=error_responses(503))
async def readyz(gallery: GalleryDep, encoders: EncodersDep, model: ModelDep, settings: SettingsDep) -> ReadyResponse:
    """Ready when both encoders and the gallery are loaded; lists the execution providers actually in use.

    A GPU deployment whose providers here lack CUDAExecutionProvider is running on CPU.
    """
    counts = await run_in_threadpool(gallery.counts)
    return ReadyResponse(
        status="ready",
        model_version=model.model_version,
        embedding_dim=model.embedding_dim,
        providers={m: list(e.providers) for m, e in encoders.items()},
        gallery=counts,
        batching=settings.batching,
        same_person=same_person_status(model.same_person, settings.same_person_far),
        precision=model.precision,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(metrics: MetricsDep, gallery: GalleryIfLoadedDep) -> Response:
    """Prometheus text format: per-stage latency, encoder batch sizes, gallery size, request counts."""
    if gallery is not None:
        await refresh_gallery_gauge(metrics, gallery)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

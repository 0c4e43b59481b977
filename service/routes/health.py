"""Liveness, readiness (models, gallery, providers in use) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.deps import MetricsDep, RuntimeDep
from service.schemas import ReadyResponse, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process answers HTTP (says nothing about models; see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness", responses=error_responses(503))
async def readyz(runtime: RuntimeDep) -> ReadyResponse:
    """Ready when both encoders and the gallery are loaded; lists the execution providers actually in use.

    A GPU deployment whose providers here lack CUDAExecutionProvider is running on CPU.
    """
    counts = await run_in_threadpool(runtime.gallery.counts)
    return ReadyResponse(
        status="ready",
        model_version=runtime.model_version,
        embedding_dim=runtime.embedding_dim,
        providers={m: list(e.providers) for m, e in runtime.encoders.items()},
        gallery=counts,
        batching=runtime.settings.batching,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, metrics: MetricsDep) -> Response:
    """Prometheus text format: per-stage latency, encoder batch sizes, gallery size, request counts."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        await runtime.refresh_gallery_gauge()
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

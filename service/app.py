"""The FastAPI app factory: ``uvicorn --factory service.app:create_app`` (nothing is loaded at import)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.audit import AuditLog, AuditMiddleware
from service.auth import ApiKeys, AuthMiddleware
from service.errors import install_error_handlers
from service.internal_errors import InternalErrorMiddleware
from service.limits import BodyLimitMiddleware
from service.media_routes import document_shared_operations
from service.metrics import Metrics, RequestCounterMiddleware
from service.openapi import document_api
from service.routes import embed, gallery, health, search
from service.runtime import open_runtime
from service.settings import Settings
from service.ui import install_ui

logger = logging.getLogger(__name__)

DESCRIPTION = """Visible-infrared person re-identification: embed person crops, keep a gallery, search across
modalities (an infrared query searches visible items by default, and the other way round).

Errors are JSON `{"error": code, "detail": message}`. Writes need the `X-API-Key` header when the service
has an API key configured; with `VIREID_AUTH_READS=true`, every endpoint but `/healthz` and `/readyz` needs it
(the write key, or the read-only key for reads). A method a path does not take is 405 `method_not_allowed`
with an `Allow` header listing the methods it does take.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; encoders, gallery and batchers are loaded by its lifespan (startup fails if they cannot)."""
    settings = settings or Settings()
    metrics = Metrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(settings, metrics)
        app.state.runtime = runtime
        try:
            yield
        finally:
            app.state.runtime = None  # readiness fails from here on
            await runtime.close()
            logger.info("service stopped")

    app = FastAPI(title="VI-ReID retrieval service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = None
    install_error_handlers(app)
    app.add_middleware(InternalErrorMiddleware)  # innermost: a 500 keeps the connection open
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=ApiKeys(settings))  # outside the body limit: no key, nothing read
    app.add_middleware(AuditMiddleware, log=AuditLog(settings.audit_log))  # outside auth: refusals are logged too
    app.add_middleware(RequestCounterMiddleware, metrics=metrics)  # outermost: counts 413s from the limit too
    for module in (embed, gallery, search, health):
        app.include_router(module.router)
    install_ui(app)  # the web page at / and /ui/
    document_shared_operations(app)  # POST /search: one operation, a multipart and a JSON body
    document_api(app)  # the middlewares' error statuses, the loaded model's embedding length
    return app

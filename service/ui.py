"""The web page: the static files under ``service/static`` served at ``/`` and ``/ui/``, under a strict CSP.

No build step and nothing from another origin: the page's own script fetches everything from this service
(``img-src blob:`` is for the thumbnails and query crops it turns into object URLs). The files hold no data, so
they are open to all (``service.auth``); what the page shows comes from the API, with the key typed into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_PREFIX = "/ui"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag) on every load: a new version of the page shows at once
}


def is_page_path(path: str) -> bool:
    """Whether ``path`` is the page or one of its files."""
    return path == "/" or path == PAGE_PREFIX or path.startswith(f"{PAGE_PREFIX}/")


class PageFiles(StaticFiles):
    """``StaticFiles`` whose responses carry ``PAGE_HEADERS``."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        """Starlette's response (200 or 304), with the page's security and cache headers."""
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


async def page() -> FileResponse:
    """The page itself (also at ``/ui/``)."""
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def install_ui(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/ui/`` (left out of the OpenAPI document: not API)."""
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount(PAGE_PREFIX, PageFiles(directory=STATIC_DIR, html=True), name="ui")

"""A small HTTP client of the service for the CLI: upload a folder of crops to the gallery, search it.

Used by ``vireid gallery add``, ``vireid search`` and ``vireid demo``; talks to a running service over HTTP only
(no encoder, index or torch in this process).
"""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common.modality import Modality

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
API_KEY_HEADER = "X-API-Key"


class ServiceError(RuntimeError):
    """The service answered with an error status; carries its ``{"error", "detail"}`` body."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        """Keep the status, the machine code and the message."""
        super().__init__(f"HTTP {status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class ImageItem:
    """A local image to upload, with the metadata sent for it."""

    path: Path
    label: str | None = None
    camera: str | None = None
    source: str | None = None


@dataclass
class UploadReport:
    """What an upload did: the ids added (in item order) and the files the service refused, with the reason."""

    ids: list[int] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, by suffix), sorted by path; ``root`` may also be one file."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is neither an image file nor a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_items(
    root: Path,
    paths: Sequence[Path],
    *,
    label_from_dir: bool = False,
    label: str | None = None,
    camera: str | None = None,
) -> list[ImageItem]:
    """Items for ``paths`` under ``root``: label from the parent folder name (or fixed), source = relative path."""
    items = []
    for path in paths:
        relative = path.relative_to(root).as_posix() if root.is_dir() else path.name
        item_label = path.parent.name if label_from_dir else label
        items.append(ImageItem(path=path, label=item_label, camera=camera, source=relative))
    return items


def raise_for_error(response: httpx.Response) -> None:
    """Raise ``ServiceError`` with the service's error code and detail when the status is not 2xx."""
    if response.is_success:
        return
    try:
        body = response.json()
        error, detail = str(body.get("error", "error")), str(body.get("detail", body))
    except (ValueError, AttributeError):
        error, detail = "error", response.text[:500]
    raise ServiceError(response.status_code, error, detail)


def _files(items: Sequence[ImageItem]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart ``files`` fields for the items."""
    out = []
    for item in items:
        content_type = mimetypes.guess_type(item.path.name)[0] or "application/octet-stream"
        out.append(("files", (item.path.name, item.path.read_bytes(), content_type)))
    return out


def _metadata(items: Sequence[ImageItem]) -> str:
    """The ``metadata`` form field: one JSON object per file, only the fields that are set."""
    entries = [
        {k: v for k, v in {"label": i.label, "camera": i.camera, "source": i.source}.items() if v is not None}
        for i in items
    ]
    return json.dumps(entries)


def add_batch(client: httpx.Client, items: Sequence[ImageItem], modality: Modality) -> list[int]:
    """POST one batch to ``/gallery`` (all or nothing); returns the new ids in item order.

    Raises:
        ServiceError: the service refused the batch (nothing of it was added).
    """
    response = client.post(
        "/gallery", params={"modality": modality.value}, files=_files(items), data={"metadata": _metadata(items)}
    )
    raise_for_error(response)
    return [int(i) for i in response.json()["ids"]]


def upload(
    client: httpx.Client,
    items: Sequence[ImageItem],
    modality: Modality,
    *,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> UploadReport:
    """Upload ``items`` in batches; a refused batch (bad image, too large) is retried file by file.

    Files the service refuses (413/415/400) are reported in ``UploadReport.failed`` and skipped; any other error
    (401, 503, connection) stops the upload by raising.
    """
    report = UploadReport()
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        try:
            report.ids.extend(add_batch(client, batch, modality))
        except ServiceError as exc:
            if exc.status not in (400, 413, 415):
                raise
            logger.warning("batch of %d refused (%s); retrying its files one by one", len(batch), exc)
            for item in batch:
                try:
                    report.ids.extend(add_batch(client, [item], modality))
                except ServiceError as one:
                    if one.status not in (400, 413, 415):
                        raise
                    report.failed.append((item.path, str(one)))
        if progress is not None:
            progress(len(batch))
    return report


def search_images(
    client: httpx.Client,
    images: Sequence[Path],
    modality: Modality,
    *,
    top_k: int | None = None,
    target: str | None = None,
    rerank: bool = False,
) -> dict[str, Any]:
    """POST ``images`` (one, or crops of one person: fused into one query) to ``/search``; the JSON answer.

    ``rerank`` asks for k-reciprocal re-ranking of the matches.
    """
    params: dict[str, str | int] = {"modality": modality.value}
    if top_k is not None:
        params["top_k"] = top_k
    if target is not None:
        params["target"] = target
    if rerank:
        params["rerank"] = "true"
    parts = [
        ("file", (image.name, image.read_bytes(), mimetypes.guess_type(image.name)[0] or "application/octet-stream"))
        for image in images
    ]
    response = client.post("/search", params=params, files=parts)
    raise_for_error(response)
    result: dict[str, Any] = response.json()
    return result


def gallery_counts(client: httpx.Client) -> dict[str, int]:
    """Number of gallery items per modality, from ``GET /gallery``."""
    response = client.get("/gallery", params={"limit": 1})
    raise_for_error(response)
    return {str(k): int(v) for k, v in response.json()["counts"].items()}


def make_client(url: str, api_key: str | None = None, timeout: float = 60.0) -> httpx.Client:
    """An httpx client for the service at ``url``, sending the API key header when one is given."""
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

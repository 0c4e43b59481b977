"""The gallery resource: add (all or nothing), list, get, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Path, Query, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from common.modality import MODALITY_NAMES, Modality
from index.base import NewItem
from index.errors import ItemNotFoundError
from service.deps import (
    WRITE_ACCESS,
    EmbedderDep,
    GalleryDep,
    MetricsDep,
    ModalityDep,
    SettingsDep,
    parse_modality,
)
from service.errors import BadParameterError
from service.images import Upload, read_uploads
from service.metadata_limits import MetadataLimits, check_extra, check_request_total, parse_extra, stored_bytes
from service.metrics import refresh_gallery_gauge
from service.schemas import MAX_INT64, AddResponse, GalleryItemOut, GalleryPage, ItemMetadata, error_responses
from service.thumbnails import (
    THUMBNAIL_CACHE_CONTROL,
    THUMBNAIL_MEDIA_TYPE,
    etag,
    etag_matches,
    make_thumbnails,
)

router = APIRouter(tags=["gallery"])

_METADATA_LIST = TypeAdapter(list[ItemMetadata])
ItemId = Annotated[int, Path(ge=1, le=MAX_INT64, description="gallery item id (as POST /gallery returned it)")]
_METADATA_EXAMPLE = '[{"label": "0042", "camera": "cam1"}, {"label": "0043", "extra": {"site": "gate-3"}}]'


def _validation_error(exc: ValidationError, field: str) -> RequestValidationError:
    errors = [{**err, "loc": ("body", field, *err["loc"])} for err in exc.errors(include_url=False)]
    return RequestValidationError(errors)


def parse_metadata(
    count: int, shared: dict[str, Any], metadata_json: str | None, extra_json: str | None, limits: MetadataLimits
) -> list[ItemMetadata]:
    """Per-file metadata: the shared form fields, overridden by the file's entry of the ``metadata`` JSON list.

    Raises:
        RequestValidationError: ``extra`` or ``metadata`` is not valid JSON of the documented shape, or an
            ``extra`` breaks the limits (422).
        BadParameterError: ``metadata`` has a different length than the list of files (400).
    """
    if extra_json is not None:
        shared["extra"] = parse_extra(extra_json, limits)
    try:
        base = ItemMetadata.model_validate({k: v for k, v in shared.items() if v is not None})
    except ValidationError as exc:
        raise _validation_error(exc, "form") from exc
    check_extra(base.extra, limits, ["extra"])
    if metadata_json is None:
        return [base] * count
    try:
        per_file = _METADATA_LIST.validate_json(metadata_json)
    except ValidationError as exc:
        raise _validation_error(exc, "metadata") from exc
    if len(per_file) != count:
        raise BadParameterError(f"metadata lists {len(per_file)} entries for {count} files; send one per file")
    for i, entry in enumerate(per_file):
        if "extra" in entry.model_fields_set:
            check_extra(entry.extra, limits, ["metadata", i, "extra"])
    return [base.model_copy(update=m.model_dump(exclude_unset=True)) for m in per_file]


def _new_item(
    embedding: Any, modality: Modality, upload: Upload, meta: ItemMetadata, thumbnail: bytes | None
) -> NewItem:
    return NewItem(
        embedding=embedding,
        modality=modality,
        label=meta.label,
        camera=meta.camera,
        captured_at=meta.captured_at.isoformat() if meta.captured_at else None,
        source=meta.source if meta.source is not None else upload.filename,
        sha256=upload.sha256,
        extra=meta.extra,
        thumbnail=thumbnail,
    )


@router.post(
    "/gallery",
    response_model=AddResponse,
    status_code=201,
    summary="Add images to the gallery (all or nothing)",
    dependencies=[WRITE_ACCESS],
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def add_items(
    embedder: EmbedderDep,
    gallery: GalleryDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    modality: ModalityDep,
    files: Annotated[list[UploadFile], File(min_length=1, description="one or more image files")],
    label: Annotated[str | None, Form(description="person label for every file")] = None,
    camera: Annotated[str | None, Form(description="camera for every file")] = None,
    captured_at: Annotated[str | None, Form(description="ISO 8601 capture time for every file")] = None,
    source: Annotated[str | None, Form(description="source name for every file (default: file name)")] = None,
    extra: Annotated[str | None, Form(description="free JSON object for every file", examples=['{"site": 3}'])] = None,
    metadata: Annotated[
        str | None,
        Form(
            description="JSON list, one metadata object per file, overriding the fields above",
            examples=[_METADATA_EXAMPLE],
        ),
    ] = None,
) -> AddResponse:
    """Embed the images and add them with their metadata; if any file fails, nothing is added.

    Example: `curl -H 'X-API-Key: $KEY' -F files=@a.jpg -F files=@b.jpg -F label=0042 'http://localhost:8000/gallery?modality=vis'`
    """
    uploads = await read_uploads(files, settings.max_files_per_request)
    shared = {"label": label, "camera": camera, "captured_at": captured_at, "source": source}
    limits = MetadataLimits.of(settings)
    metas = parse_metadata(len(uploads), shared, metadata, extra, limits)
    check_request_total(sum(stored_bytes(m, u.filename) for m, u in zip(metas, uploads, strict=True)), limits)
    embeddings = await embedder.embed(modality, uploads, endpoint="gallery")
    thumbnails = await run_in_threadpool(
        make_thumbnails, uploads, settings.thumbnail_size, settings.thumbnail_quality, settings.max_image_pixels
    )
    rows = zip(embeddings, uploads, metas, thumbnails, strict=True)
    items = [_new_item(e, modality, u, m, t) for e, u, m, t in rows]
    ids = await run_in_threadpool(gallery.add, items)
    await refresh_gallery_gauge(metrics, gallery)
    return AddResponse(modality=modality, ids=ids)


@router.get(
    "/gallery", response_model=GalleryPage, summary="List gallery items", responses=error_responses(400, 422, 503)
)
async def list_items(
    gallery: GalleryDep,
    metrics: MetricsDep,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64, description="items to skip (id order)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    modality: Annotated[
        str | None,
        Query(
            description="only this modality: vis|ir (aliases accepted; case and padding ignored)",
            json_schema_extra={"enum": list(MODALITY_NAMES)},
        ),
    ] = None,
) -> GalleryPage:
    """A page of items in id order, and the number of items per modality."""
    only = parse_modality(modality) if modality is not None else None
    with metrics.time("metadata"):
        items = await run_in_threadpool(gallery.list, offset, limit, only)
        counts = await run_in_threadpool(gallery.counts)
    total = counts[only] if only is not None else sum(counts.values())
    return GalleryPage(
        items=[GalleryItemOut.of(i) for i in items], offset=offset, limit=limit, total=total, counts=counts
    )


@router.get(
    "/gallery/{item_id}",
    response_model=GalleryItemOut,
    summary="One gallery item",
    responses=error_responses(404, 422, 503),
)
async def get_item(gallery: GalleryDep, metrics: MetricsDep, item_id: ItemId) -> GalleryItemOut:
    """The item's metadata (no vector)."""
    with metrics.time("metadata"):
        item = await run_in_threadpool(gallery.get, item_id)
    return GalleryItemOut.of(item)


@router.delete(
    "/gallery/{item_id}",
    status_code=204,
    summary="Delete a gallery item",
    dependencies=[WRITE_ACCESS],
    responses=error_responses(401, 404, 422, 503),
)
async def delete_item(gallery: GalleryDep, metrics: MetricsDep, item_id: ItemId) -> Response:
    """Remove the item's vector and metadata; durable on return."""
    await run_in_threadpool(gallery.delete, item_id)
    await refresh_gallery_gauge(metrics, gallery)
    return Response(status_code=204)


_THUMBNAIL_HEADERS = {
    "ETag": {"description": "strong validator: a hash of the JPEG bytes", "schema": {"type": "string"}},
    "Cache-Control": {"description": THUMBNAIL_CACHE_CONTROL, "schema": {"type": "string"}},
}


@router.get(
    "/gallery/{item_id}/thumbnail",
    response_class=Response,
    summary="The item's thumbnail (JPEG)",
    responses={
        200: {
            "description": "the JPEG kept when the item was added (longest side <= VIREID_THUMBNAIL_SIZE)",
            "content": {THUMBNAIL_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "headers": _THUMBNAIL_HEADERS,
        },
        304: {"description": "not modified: If-None-Match names the current ETag", "headers": _THUMBNAIL_HEADERS},
        **error_responses(404, 422, 503),
    },
)
async def get_thumbnail(
    gallery: GalleryDep,
    metrics: MetricsDep,
    item_id: ItemId,
    if_none_match: Annotated[str | None, Header(description="an ETag this client already holds")] = None,
) -> Response:
    """The JPEG thumbnail; 404 for an unknown id or an item added without one (before thumbnails were kept)."""
    with metrics.time("metadata"):
        jpeg = await run_in_threadpool(gallery.thumbnail, item_id)
    if jpeg is None:
        raise ItemNotFoundError(
            f"gallery item {item_id} has no thumbnail: it was added before thumbnails were kept, "
            "or with VIREID_THUMBNAIL_SIZE=0; add the image again to get one"
        )
    tag = etag(jpeg)
    headers = {"ETag": tag, "Cache-Control": THUMBNAIL_CACHE_CONTROL}
    if etag_matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    return Response(jpeg, media_type=THUMBNAIL_MEDIA_TYPE, headers=headers)

"""Gallery items to Milvus rows and back: scalar fields for filtering, a JSON field for the rest of the metadata."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import numpy as np

from common.modality import Modality
from index.base import GalleryItem, NewItem

# Fields every read returns (the vector and the thumbnail only where asked for).
ITEM_FIELDS = ["id", "modality", "label", "has_label", "camera", "has_camera", "meta"]
THUMBNAIL_FIELD = "thumbnail"
VECTOR_FIELD = "embedding"


def now_iso() -> str:
    """The current UTC time in the format the FAISS gallery stores ``added_at`` in."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_row(item_id: int, item: NewItem, vector: np.ndarray, added_at: str) -> dict[str, Any]:
    """The Milvus row of one item; ``label``/``camera`` are ``""`` plus ``has_*`` false when absent."""
    thumbnail = base64.b64encode(item.thumbnail).decode("ascii") if item.thumbnail is not None else ""
    return {
        "id": int(item_id),
        VECTOR_FIELD: vector.astype(np.float32).tolist(),
        "modality": Modality(item.modality).value,
        "label": item.label or "",
        "has_label": item.label is not None,
        "camera": item.camera or "",
        "has_camera": item.camera is not None,
        "meta": {
            "captured_at": item.captured_at,
            "source": item.source,
            "sha256": item.sha256,
            "extra": item.extra,
            "added_at": added_at,
            "has_thumbnail": item.thumbnail is not None,
        },
        THUMBNAIL_FIELD: thumbnail,
    }


def to_item(row: dict[str, Any]) -> GalleryItem:
    """The gallery item a Milvus row (with at least ``ITEM_FIELDS``) holds."""
    meta = row["meta"]
    return GalleryItem(
        id=int(row["id"]),
        modality=Modality(row["modality"]),
        label=row["label"] if row["has_label"] else None,
        camera=row["camera"] if row["has_camera"] else None,
        captured_at=meta.get("captured_at"),
        source=meta.get("source"),
        sha256=meta.get("sha256"),
        extra=meta.get("extra") or {},
        added_at=meta["added_at"],
    )


def thumbnail_of(row: dict[str, Any]) -> bytes | None:
    """The thumbnail bytes a row holds, ``None`` if the item was added without one."""
    if not row["meta"].get("has_thumbnail"):
        return None
    return base64.b64decode(row[THUMBNAIL_FIELD])

"""Gallery thumbnails: a small JPEG of each added crop, made at add time and served with an ETag."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

from PIL import Image

from common.preprocess import decode_image
from service.images import Upload

THUMBNAIL_MEDIA_TYPE = "image/jpeg"
# The bytes of an id never change (ids are not reused), but a gallery directory may be replaced behind the same
# address: the browser keeps the thumbnail and asks with If-None-Match each time (a 304 when unchanged).
THUMBNAIL_CACHE_CONTROL = "private, no-cache"


def make_thumbnail(data: bytes, size: int, quality: int, max_pixels: int) -> bytes:
    """A JPEG of the image in ``data`` (EXIF orientation applied, as the encoder sees it), longest side <= ``size``.

    Raises:
        ImageTooLargeError, ImageDecodeError: as ``common.preprocess.decode_image``.
    """
    img = decode_image(data, max_pixels)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)  # keeps the aspect ratio, never enlarges
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def make_thumbnails(uploads: Sequence[Upload], size: int, quality: int, max_pixels: int) -> list[bytes | None]:
    """One thumbnail per upload, or ``None`` for each when ``size`` is 0 (thumbnails disabled); blocking."""
    if size == 0:
        return [None] * len(uploads)
    return [make_thumbnail(u.data, size, quality, max_pixels) for u in uploads]


def etag(data: bytes) -> str:
    """A strong ETag of the bytes (quoted, as the header carries it)."""
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (or is ``*``); weak comparison, as RFC 9110 asks for GET."""
    if if_none_match is None:
        return False
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return "*" in candidates or tag in candidates

"""Uploaded files to encoder input: read, hash, decode (Pillow, bomb guard) and resize with the model's card."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
from starlette.datastructures import UploadFile

from common.model_card import ModelCard
from common.preprocess import ImageDecodeError, ImageTooLargeError, decode_image, image_pixels, to_input
from service.errors import BadParameterError, RequestTooLargeError, TooManyFilesError

T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """One uploaded file's bytes."""

    filename: str | None
    data: bytes

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def name(self) -> str:
        """A name for messages."""
        return self.filename or "<unnamed upload>"


async def read_uploads(files: Sequence[UploadFile], max_files: int) -> list[Upload]:
    """Read every file (already bounded by the body limit).

    Raises:
        BadParameterError: no file was sent.
        TooManyFilesError: more than ``max_files`` files.
    """
    if not files:
        raise BadParameterError("send at least one image file")
    if len(files) > max_files:
        raise TooManyFilesError(
            f"{len(files)} files in one request; the limit is {max_files} (VIREID_MAX_FILES_PER_REQUEST)"
        )
    return [Upload(f.filename, await f.read()) for f in files]


def decode_batch(uploads: Sequence[Upload], card: ModelCard, max_pixels: int, max_request_pixels: int) -> np.ndarray:
    """Decode and resize every upload to float32 ``(N, 3, H, W)`` in [0, 1]; blocking, run it in a thread.

    Every header is read (and the request's pixel total checked) before any image is decoded.

    Raises:
        ImageTooLargeError: an image exceeds ``max_pixels`` (the file is named).
        RequestTooLargeError: the images sum to more than ``max_request_pixels``.
        ImageDecodeError: a file is not a decodable image (the file is named).
    """
    total = sum(_named(upload, partial(image_pixels, max_pixels=max_pixels)) for upload in uploads)
    if total > max_request_pixels:
        raise RequestTooLargeError(
            f"the {len(uploads)} images hold {total} pixels in all; the limit per request is {max_request_pixels} "
            "(VIREID_MAX_REQUEST_PIXELS): send fewer or smaller images"
        )
    decode = partial(decode_image, max_pixels=max_pixels)
    return np.stack([to_input(_named(u, decode), card.input_height, card.input_width) for u in uploads])


def _named(upload: Upload, read: Callable[[bytes], T]) -> T:
    """Run ``read`` on the upload's bytes, naming the file in an image error."""
    try:
        return read(upload.data)
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{upload.name}: {exc}") from exc
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{upload.name}: {exc}") from exc

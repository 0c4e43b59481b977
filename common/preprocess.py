"""Image decoding and resizing shared by evaluation and the service (normalisation lives in the network/graph)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_MAX_PIXELS = 40_000_000
_ORIENTATION_TRANSPOSE = {  # EXIF Orientation -> the transpose that displays the stored pixels upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode."""


class ImageTooLargeError(ValueError):
    """The image declares more pixels than allowed (decompression-bomb guard)."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to an RGB image: EXIF orientation applied, any mode (greyscale IR included) to 3 channels.

    Raises:
        ImageTooLargeError: width x height exceeds ``max_pixels`` (checked from the header, before decoding).
        ImageDecodeError: the bytes are not a decodable image (nor is their EXIF block, when it is unreadable).
    """
    with _image_errors():
        img = _open_checked(data, max_pixels)
        img.load()
        return to_rgb(img)


def image_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Width x height read from the image header alone (nothing is decoded), checked as ``decode_image`` checks it.

    Raises:
        ImageTooLargeError: width x height exceeds ``max_pixels``.
        ImageDecodeError: the bytes do not start with an image header Pillow reads.
    """
    with _image_errors():
        width, height = _open_checked(data, max_pixels).size
        return int(width * height)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse an image over ``max_pixels``."""
    img = Image.open(io.BytesIO(data))
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return img


@contextlib.contextmanager
def _image_errors() -> Iterator[None]:
    """Turn Pillow's many failures into ``ImageTooLargeError`` (bombs) or ``ImageDecodeError`` (the rest)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:  # Pillow raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode to RGB (greyscale is replicated to 3 channels)."""
    img = apply_orientation(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
    return img.convert("RGB")


def apply_orientation(img: Image.Image) -> Image.Image:
    """Transpose the pixels as the EXIF Orientation tag says (only the pixels: the EXIF block is not rewritten).

    ``ImageOps.exif_transpose`` also re-encodes the EXIF block without the tag, which raises ``struct.error``
    on a block with a malformed entry elsewhere; the pixels are all the embedding needs.
    """
    method = _ORIENTATION_TRANSPOSE.get(img.getexif().get(ExifTags.Base.Orientation, 1))
    return img.transpose(method) if method is not None else img


def load_image(path: str | Path) -> Image.Image:
    """Read an image file as RGB (EXIF orientation applied)."""
    with Image.open(path) as img:
        img.load()
        return to_rgb(img)


def to_input(img: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize (bilinear) to ``height`` x ``width`` and return float32 ``(3, H, W)`` in [0, 1]."""
    resized = img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


def normalize(batch: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """Normalise a float32 ``(N, 3, H, W)`` batch in [0, 1] channel-wise."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return (batch - m) / s

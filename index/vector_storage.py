"""How gallery vectors are stored in SQLite: float32 or float16 little-endian blobs, told apart by their length.

The in-memory FAISS index is float32 either way; float16 halves the vectors' share of ``metadata.sqlite``. Each blob
says its own precision (``dim * 4`` or ``dim * 2`` bytes), so a table part-way through a conversion reads correctly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

VectorDtype = Literal["float32", "float16"]
_WIRE = {"float32": "<f4", "float16": "<f2"}


def blob_bytes(dim: int, dtype: VectorDtype) -> int:
    """Length of one stored vector of ``dim`` values in ``dtype``."""
    return dim * np.dtype(_WIRE[dtype]).itemsize


def encode(embeddings: np.ndarray, dtype: VectorDtype) -> list[bytes]:
    """One blob per row of ``(n, dim)`` embeddings."""
    return [row.tobytes() for row in np.asarray(embeddings).astype(_WIRE[dtype])]


def decode(blob: bytes, dim: int) -> np.ndarray:
    """A stored vector as float32 ``(dim,)``, whichever precision it was stored in.

    Raises:
        ValueError: the blob has neither length.
    """
    for dtype in _WIRE.values():
        if len(blob) == dim * np.dtype(dtype).itemsize:
            return np.frombuffer(blob, dtype=dtype).astype(np.float32, copy=False)
    raise ValueError(f"a stored vector has {len(blob)} bytes; dimension {dim} needs {dim * 4} (float32) or {dim * 2}")


def at_rest(embeddings: np.ndarray, dtype: VectorDtype) -> np.ndarray:
    """``embeddings`` as float32 after a round trip through ``dtype``: what reading them back from SQLite gives."""
    return np.asarray(embeddings, dtype=np.float32).astype(_WIRE[dtype]).astype(np.float32)

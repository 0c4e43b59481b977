"""Checks of the embeddings a gallery is given (items to add, queries): shape, finite values, unit L2 norm.

Shared by every backend (``index/gallery.py``, ``index/milvus/gallery.py``), so all refuse the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.base import NewItem
from index.errors import InvalidEmbeddingError

NORM_TOLERANCE = 1e-3


def validate_embeddings(embeddings: np.ndarray, dim: int, what: str) -> np.ndarray:
    """Return float32 C-contiguous ``(n, dim)`` rows, each finite and of unit L2 norm.

    Raises:
        InvalidEmbeddingError: wrong shape, non-finite values, or a norm off 1 by more than ``NORM_TOLERANCE``.
    """
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidEmbeddingError(f"{what} must have shape (n, {dim}), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidEmbeddingError(f"{what} rows {np.flatnonzero(bad)[:10].tolist()} contain NaN or inf")
    norms = np.linalg.norm(arr, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        first = int(np.flatnonzero(off)[0])
        raise InvalidEmbeddingError(
            f"{what} rows {np.flatnonzero(off)[:10].tolist()} are not L2-normalised (row {first} has norm "
            f"{norms[first]:.6f}); pass the encoder's normalised embeddings"
        )
    return arr


def stack_embeddings(items: Sequence[NewItem], dim: int) -> np.ndarray:
    """The items' embeddings as validated float32 ``(n, dim)`` rows (see ``validate_embeddings``).

    Raises:
        InvalidEmbeddingError: an embedding is not ``(dim,)``, finite and L2-normalised.
    """
    rows = [np.asarray(item.embedding).reshape(1, -1) for item in items]
    if any(row.shape[1] != dim for row in rows):
        shapes = sorted({np.asarray(item.embedding).shape for item in items})
        raise InvalidEmbeddingError(f"embeddings must have shape ({dim},), got {shapes}")
    return validate_embeddings(np.concatenate(rows), dim, "embeddings")

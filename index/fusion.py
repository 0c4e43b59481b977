"""Tracklet queries: several crops of one person fused into one query embedding.

The fused query is the mean of the L2-normalised embeddings, renormalised. Its inner product with a gallery
vector is proportional to the average cosine similarity of that vector to the crops (the standard set-to-set
baseline); ``docs/method.md`` says why this fusion and not max-pooling or per-image rank fusion.
"""

from __future__ import annotations

import numpy as np


class FusionError(ValueError):
    """The embeddings cannot form one query (none, wrong shape, non-finite, or they cancel out)."""


def fuse_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """One L2-normalised float32 query ``(1, dim)`` from ``n >= 1`` embeddings ``(n, dim)`` of one person.

    Raises:
        FusionError: no embedding, not a 2-D array, non-finite values, or a mean of zero length.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise FusionError(f"expected n >= 1 embeddings as an (n, dim) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise FusionError("embeddings have non-finite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise FusionError("an embedding has zero length; it has no direction to average")
    mean = (x / norms).mean(axis=0)
    length = float(np.linalg.norm(mean))
    if length < 1e-6:
        raise FusionError("the embeddings cancel out (their mean has zero length); they cannot be one person's")
    fused: np.ndarray = (mean / length).reshape(1, -1).astype(np.float32)
    return fused

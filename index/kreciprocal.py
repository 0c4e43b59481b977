"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017).

Not the IVF exact re-rank of ``IndexConfig.rerank`` (which re-scores approximate candidates with stored vectors):
this changes the order itself, from the structure of the gallery around the probe.

The paper's method on one probe ``p`` and a set of gallery vectors, in vectorised numpy:

1. Original distance ``d(i, j)``: squared Euclidean distance of the L2-normalised embeddings (``2 - 2 cos``) over
   the probe and the gallery vectors, each row divided by its maximum (as the public code does).
2. ``N(i, k)``: the ``k + 1`` nearest of ``i`` (itself included); ``R(i, k) = {j in N(i, k) : i in N(j, k)}``,
   the k-reciprocal neighbours (eq. 4).
3. Expansion (eq. 6): ``R*(i) = R(i, k1)`` united with every ``R(c, k1/2)``, ``c in R(i, k1)``, that shares more
   than 2/3 of its members with ``R(i, k1)``.
4. Encoding (eq. 7): ``V[i, j] = exp(-d(i, j))`` over ``R*(i)``, normalised to sum 1; local query expansion
   (eq. 11) replaces ``V[i]`` by the mean of ``V`` over the ``k2`` nearest of ``i``.
5. Jaccard distance (eq. 10): ``1 - sum min(V_p, V_g) / sum max(V_p, V_g)``, written as ``1 - m / (2 - m)`` with
   ``m = sum min`` (both rows sum to 1); final distance (eq. 12): ``(1 - lambda) d_J + lambda d``.

The public code (``re_ranking.py`` of Zhong, as fast-reid, torchreid and AGW ship it) runs this on the full
``(queries + gallery)^2`` matrix. Here the set is bounded: the probe, its top candidates and their gallery
neighbours (``candidate_set``), so memory and time depend on the candidate depth and ``k1``, never on the gallery
size. Over a candidate set holding the whole gallery the result equals the public code's with one query (the
tests check it against a dense transcription of that code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K1, K2, LAMBDA = 20, 6, 0.3  # the paper's defaults (section 4.2)


@dataclass(frozen=True)
class KReciprocalParams:
    """The re-ranking's parameters: k-reciprocal size ``k1``, query-expansion size ``k2``, weight ``lam`` of d."""

    k1: int = K1
    k2: int = K2
    lam: float = LAMBDA

    def __post_init__(self) -> None:
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError(f"k1 and k2 must be at least 1, got k1={self.k1}, k2={self.k2}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {self.lam}")


def original_distances(vectors: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(n, n)`` of L2-normalised rows, each row divided by its maximum."""
    x = np.asarray(vectors, dtype=np.float32)
    dist = np.maximum(2.0 - 2.0 * (x @ x.T), 0.0).astype(np.float32)
    np.fill_diagonal(dist, 0.0)
    top = dist.max(axis=1, keepdims=True)
    normalised: np.ndarray = dist / np.where(top > 0, top, 1.0)
    return normalised


def _reciprocal(near: np.ndarray) -> np.ndarray:
    """Boolean ``(n, n)`` from neighbour lists ``(n, m)``: ``[i, j]`` when each is in the other's list."""
    n = len(near)
    member = np.zeros((n, n), dtype=bool)
    member[np.arange(n)[:, None], near] = True
    reciprocal: np.ndarray = member & member.T
    return reciprocal


def encode(dist: np.ndarray, params: KReciprocalParams) -> np.ndarray:
    """k-reciprocal feature ``V`` ``(n, n)`` of every row of ``dist``, after local query expansion (eqs. 6, 7, 11).

    Works on the neighbour lists (``k1 + 1`` per row), so besides ``V`` itself the cost is ``O(n k1^2)``.
    """
    half = int(np.around(params.k1 / 2.0))
    near = top_rows(-dist, max(params.k1 + 1, params.k2))  # nearest first, ties by index
    near1, near_half = near[:, : params.k1 + 1], near[:, : half + 1]
    rows = np.arange(len(dist))[:, None]
    recip, recip_half = _reciprocal(near1), _reciprocal(near_half)
    in_half = recip_half[rows, near_half]  # (n, half + 1): list entries of c that are in R(c, k1/2)
    # overlap[i, t] = |R(c, k1/2) & R(i, k1)| for c = near1[i, t]
    overlap = (in_half[near1] & recip[rows[:, :, None], near_half[near1]]).sum(axis=2)
    grows = recip[rows, near1] & (overlap > (2.0 / 3.0) * in_half.sum(axis=1)[near1])
    i, t = np.nonzero(grows)
    added = in_half[near1[i, t]]  # (g, half + 1)
    expanded = recip.copy()
    expanded[np.repeat(i, added.shape[1])[added.ravel()], near_half[near1[i, t]].ravel()[added.ravel()]] = True
    weights = np.where(expanded, np.exp(-dist), 0.0).astype(np.float32)
    v = weights / weights.sum(axis=1, keepdims=True)
    expanded_v: np.ndarray = v[near[:, : params.k2]].mean(axis=1)  # k2 = 1 keeps V as it is
    return expanded_v


def rerank_probe(probe: np.ndarray, gallery: np.ndarray, params: KReciprocalParams | None = None) -> np.ndarray:
    """Re-ranked distances ``(m,)`` of one probe ``(dim,)`` to ``m`` gallery vectors ``(m, dim)``, smaller = closer.

    Both L2-normalised. Memory and time are ``O(m^2)``: pass a bounded set (see ``candidate_set``).
    """
    p = params or KReciprocalParams()
    gallery = np.asarray(gallery, dtype=np.float32)
    if gallery.ndim != 2 or np.shape(probe) != (gallery.shape[1],):
        raise ValueError(f"probe must be (dim,) and gallery (m, dim); got {np.shape(probe)} and {gallery.shape}")
    if len(gallery) == 0:
        return np.zeros(0, dtype=np.float32)
    dist = original_distances(np.vstack([np.asarray(probe, dtype=np.float32)[None, :], gallery]))
    v = encode(dist, p)
    shared = np.minimum(v[0][None, :], v[1:]).sum(axis=1)
    jaccard = 1.0 - shared / (2.0 - shared)
    final: np.ndarray = ((1.0 - p.lam) * jaccard + p.lam * dist[0, 1:]).astype(np.float32)
    return final


def candidate_set(top: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Gallery rows to re-rank: the probe's top candidates ``(N,)`` then their neighbours ``(N, k)``, unique, in order.

    ``-1`` entries (a neighbour list shorter than asked) are ignored.
    """
    rows = np.concatenate([np.asarray(top).ravel(), np.asarray(neighbours).ravel()])
    rows = rows[rows >= 0]
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)]


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices ``(n, min(k, cols))`` of the ``k`` largest scores of each row, best first (ties by index)."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((len(scores), 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def rerank_distmat(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    params: KReciprocalParams | None = None,
    candidates: int = 100,
    chunk: int = 256,
) -> np.ndarray:
    """Re-ranked ``distmat`` ``(num_q, num_g)`` of every query, each over its own bounded candidate set.

    For each query: its ``candidates`` nearest gallery rows plus their ``k1`` nearest gallery neighbours are
    re-ranked (``rerank_probe``); those get distances in [0, 1], every other row keeps the cosine-distance order
    after them (``2 + 1 - cos``). Gallery neighbours are found ``chunk`` rows at a time (no ``num_g^2`` array).
    """
    p = params or KReciprocalParams()
    q_feats = np.asarray(q_feats, dtype=np.float32)
    g_feats = np.asarray(g_feats, dtype=np.float32)
    neighbours = np.zeros((0, p.k1 + 1), dtype=np.int64)
    if len(g_feats):
        blocks = range(0, len(g_feats), chunk)
        neighbours = np.vstack([top_rows(g_feats[i : i + chunk] @ g_feats.T, p.k1 + 1) for i in blocks])
    out = np.empty((len(q_feats), len(g_feats)), dtype=np.float32)
    for start in range(0, len(q_feats), chunk):
        scores = q_feats[start : start + chunk] @ g_feats.T
        out[start : start + chunk] = 3.0 - scores
        for row, top in enumerate(top_rows(scores, candidates)):
            members = candidate_set(top, neighbours[top])
            out[start + row, members] = rerank_probe(q_feats[start + row], g_feats[members], p)
    return out

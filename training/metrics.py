"""Re-identification metrics of the VI-ReID community protocols: CMC, mAP and mINP.

Numerically the same as the public protocol code on the same inputs: ``eval_sysu`` and ``eval_regdb`` follow
AGW's ``eval_metrics.py`` (github.com/mangye16/Cross-Modal-Re-ID-baseline), ``eval_llcm`` follows the LLCM
release (github.com/ZYK100/LLCM, ``AGW/eval_metrics.py``). Two deliberate differences, both invisible on inputs
where the public code works:

* Ties in ``distmat`` are broken by gallery index (a stable sort), so results do not depend on the machine's
  sort implementation. The public code uses ``np.argsort``'s default (unstable) quicksort.
* The CMC always has ``max_rank`` entries. Where the public code crashes (a ranked list with fewer distinct
  identities than ``max_rank``) or truncates (fewer gallery images than ``max_rank``), the curve is continued
  at its value for the last available rank: a query whose identity is in the gallery has been found by then,
  so every valid query counts as a hit at all ranks past the end of its list, and the curve reaches 1.

Per query, rows are ranked by increasing distance; some gallery entries are removed (protocol-specific); a query
with no remaining true match is skipped (as in the public code). Over the kept list of a valid query:
AP = mean over true matches of (matches so far / rank), mINP's INP = (number of matches) / (rank of the last
match). ``eval_sysu`` and ``eval_llcm`` rank *distinct identities* for the CMC (each gallery identity counts at
its first occurrence), ``eval_regdb`` ranks images (the standard CMC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import assert_never

import numpy as np

from training.data.base import EvalSplit

logger = logging.getLogger(__name__)

Metrics = tuple[np.ndarray, float, float]
"""``(cmc, mAP, mINP)``: ``cmc[k]`` is the Rank-(k+1) fraction, shape ``(max_rank,)``; all fractions in [0, 1]."""

# (query rows) -> boolean (rows, num_g) mask of gallery entries to drop, in gallery order; None drops nothing.
_Removal = Callable[[slice], np.ndarray | None]

_CHUNK = 512  # queries per block: bounds the (rows, num_g) working arrays


class NoValidQueryError(ValueError):
    """No query has a true match left in the gallery after the protocol's removals."""


def eval_sysu(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 20,
) -> Metrics:
    """SYSU-MM01 protocol: for a cam-3 query drop every cam-2 gallery image; distinct-identity CMC.

    Args:
        distmat: ``(num_q, num_g)``, smaller = closer.
        q_pids, g_pids: identities, ``(num_q,)`` and ``(num_g,)``.
        q_camids, g_camids: camera numbers (1..6), same shapes.
        max_rank: length of the returned CMC.

    Returns:
        ``(cmc, mAP, mINP)`` as fractions.

    Raises:
        NoValidQueryError: no query identity appears in the (kept) gallery.
    """
    q_pids, g_pids, q_camids, g_camids = _check(
        distmat, max_rank, q_pids=q_pids, g_pids=g_pids, q_camids=q_camids, g_camids=g_camids
    )
    g_cam2 = g_camids == 2

    def removal(rows: slice) -> np.ndarray:
        return (q_camids[rows] == 3)[:, None] & g_cam2[None, :]

    return _evaluate(distmat, q_pids, g_pids, removal, distinct=True, max_rank=max_rank)


def eval_llcm(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 20,
) -> Metrics:
    """LLCM protocol: drop gallery images of the query's identity taken by the query's camera; distinct-id CMC.

    Args and returns as :func:`eval_sysu`.
    """
    q_pids, g_pids, q_camids, g_camids = _check(
        distmat, max_rank, q_pids=q_pids, g_pids=g_pids, q_camids=q_camids, g_camids=g_camids
    )

    def removal(rows: slice) -> np.ndarray:
        same_pid = q_pids[rows, None] == g_pids[None, :]
        return same_pid & (q_camids[rows, None] == g_camids[None, :])

    return _evaluate(distmat, q_pids, g_pids, removal, distinct=True, max_rank=max_rank)


def eval_regdb(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, max_rank: int = 20) -> Metrics:
    """RegDB protocol: nothing removed (query and gallery come from different cameras); standard image CMC.

    Args and returns as :func:`eval_sysu`, without cameras.
    """
    q_pids, g_pids = _check(distmat, max_rank, q_pids=q_pids, g_pids=g_pids)
    return _evaluate(distmat, q_pids, g_pids, lambda rows: None, distinct=False, max_rank=max_rank)


def split_metrics(distmat: np.ndarray, split: EvalSplit, max_rank: int = 20) -> Metrics:
    """Metrics of one :class:`EvalSplit` with its ``protocol``."""
    q_pids = np.array([s.pid for s in split.query])
    g_pids = np.array([s.pid for s in split.gallery])
    q_camids = np.array([s.camid for s in split.query])
    g_camids = np.array([s.camid for s in split.gallery])
    if split.protocol == "sysu":
        return eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    if split.protocol == "llcm":
        return eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    if split.protocol == "regdb":
        return eval_regdb(distmat, q_pids, g_pids, max_rank)
    assert_never(split.protocol)


def _check(distmat: np.ndarray, max_rank: int, **labels: np.ndarray) -> list[np.ndarray]:
    """Validate shapes; return the label arrays (``q_*`` of length num_q, ``g_*`` of num_g) as 1-D arrays."""
    if np.ndim(distmat) != 2:
        raise ValueError(f"distmat must be 2-D (num_q, num_g), got shape {np.shape(distmat)}")
    num_q, num_g = np.shape(distmat)
    arrays = []
    for name, values in labels.items():
        array = np.asarray(values).ravel()
        if len(array) != (num_q if name.startswith("q_") else num_g):
            raise ValueError(f"{name} has {len(array)} entries but distmat has shape {(num_q, num_g)}")
        arrays.append(array)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    return arrays


def _evaluate(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    removal: _Removal,
    distinct: bool,
    max_rank: int,
) -> Metrics:
    """Rank every query, drop removed entries, and aggregate CMC / AP / INP over the valid queries."""
    distmat = np.asarray(distmat)
    ranks, aps, inps = [], [], []
    for start in range(0, distmat.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        r, ap, inp = _rank_block(distmat[rows], q_pids[rows], g_pids, removal(rows), distinct)
        ranks.append(r)
        aps.append(ap)
        inps.append(inp)
    first_rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    if first_rank.size == 0:
        raise NoValidQueryError("no query identity appears in the gallery (after the protocol's removals)")
    hits = np.bincount(np.minimum(first_rank, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hits) / first_rank.size
    return cmc, float(np.mean(np.concatenate(aps))), float(np.mean(np.concatenate(inps)))


def _rank_block(
    distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, removed: np.ndarray | None, distinct: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the valid queries of a block: rank of the first hit (1-based), AP and INP.

    Args:
        distmat: ``(n, num_g)``; q_pids ``(n,)``; g_pids ``(num_g,)``; removed ``(n, num_g)`` in gallery order.
        distinct: rank the first hit among distinct identities (SYSU/LLCM) instead of among images (RegDB).
    """
    order = np.argsort(distmat, axis=1, kind="stable")  # ties: lower gallery index first
    ranked_pids = g_pids[order]
    keep = np.ones(order.shape, dtype=bool) if removed is None else ~np.take_along_axis(removed, order, axis=1)
    matches = (ranked_pids == q_pids[:, None]) & keep
    valid = matches.any(axis=1)
    if not valid.any():
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    ranked_pids, keep, matches = ranked_pids[valid], keep[valid], matches[valid]
    rows = np.arange(matches.shape[0])

    kept_rank = np.cumsum(keep, axis=1)  # 1-based position in the kept list (at kept positions)
    hit_count = np.cumsum(matches, axis=1)
    num_rel = hit_count[:, -1]
    precision = np.where(matches, hit_count / np.maximum(kept_rank, 1), 0.0)
    ap = precision.sum(axis=1) / num_rel
    last_hit = matches.shape[1] - 1 - np.argmax(matches[:, ::-1], axis=1)
    inp = num_rel / kept_rank[rows, last_hit]

    first_hit = np.argmax(matches, axis=1)
    position = _first_occurrence(ranked_pids, keep) if distinct else keep
    first_rank = np.cumsum(position, axis=1)[rows, first_hit]
    return first_rank.astype(np.int64), ap, inp


def _first_occurrence(ranked_pids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mask of kept entries whose identity does not occur at an earlier kept position of the same row."""
    _, codes = np.unique(ranked_pids, return_inverse=True)
    codes = np.where(keep, codes.reshape(ranked_pids.shape), -1)
    by_pid = np.argsort(codes, axis=1, kind="stable")  # equal ids stay in rank order
    sorted_codes = np.take_along_axis(codes, by_pid, axis=1)
    starts = np.ones(codes.shape, dtype=bool)
    starts[:, 1:] = sorted_codes[:, 1:] != sorted_codes[:, :-1]
    first = np.zeros(codes.shape, dtype=bool)
    np.put_along_axis(first, by_pid, starts, axis=1)
    return first & keep

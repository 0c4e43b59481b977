"""FAISS indexes of one modality: build (exact or IVF), list ids, filtered top-k search, exact scoring, file I/O.

Exact: ``IndexIDMap2(IndexFlatIP)``. IVF: the IVF index itself carries the 64-bit ids (``add_with_ids``) with a
hashtable direct map; it is *not* wrapped in ``IndexIDMap2``, because ``IndexIDMap*.remove_ids`` compacts its id
table while IVF keeps the old internal numbers in its lists, so ids returned after a delete would be wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from common.fsio import atomic_write
from index.config import IndexConfig

# faiss's bundled stubs lack the numpy overloads of the SWIG classes (remove_ids(array), SearchParameters(sel=...)),
# so FAISS objects are typed as Any here and the behaviour is pinned by tests/index.
FaissIndex = Any

# SQ8 learns one [min, max] range per dimension (of the residuals to the IVF centroids) from the training sample
# and clamps every later vector into it. Vectors added after training that fall outside the sample's range were
# clamped so hard that an item could score ~0.6 against its own embedding and lose top-1 to a neighbour (seen
# with small training samples). Widening each side of the range by this fraction of its width (FAISS
# ``rangestat_arg`` of ``RS_minmax``) leaves room for them at the cost of a 1.5x coarser step (recall@10 unchanged
# in our measurements). It narrows the clamping, it does not remove it: IVF-SQ8 stays approximate.
SQ8_RANGE_MARGIN = 0.25


def new_exact(dim: int) -> FaissIndex:
    """An empty exact inner-product index with 64-bit ids."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def new_ivf(config: IndexConfig, dim: int, train_vectors: np.ndarray) -> FaissIndex:
    """An empty IVF index trained on ``train_vectors`` float32 ``(n, dim)``, n >= ``config.nlist``."""
    quantizer = faiss.IndexFlatIP(dim)
    ip = faiss.METRIC_INNER_PRODUCT
    index: FaissIndex
    if config.quantizer == "sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, config.nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        index.sq.rangestat_arg = SQ8_RANGE_MARGIN
    elif config.quantizer == "pq":
        if dim % config.pq_m:
            raise ValueError(f"pq_m={config.pq_m} does not divide embedding_dim={dim}; pick a divisor of {dim}")
        index = faiss.IndexIVFPQ(quantizer, dim, config.nlist, config.pq_m, 8, ip)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, config.nlist, ip)
    index.train(np.ascontiguousarray(train_vectors, dtype=np.float32))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    return index


def is_ivf(index: FaissIndex) -> bool:
    """Whether ``index`` is an IVF index (approximate) rather than the exact ``IndexIDMap2``."""
    return isinstance(index, faiss.IndexIVF)


def build_params(index: FaissIndex) -> dict[str, Any]:
    """What ``index`` was built as, in ``IndexConfig.build_params`` terms (``train_min`` is not recorded in it)."""
    if not is_ivf(index):
        return {"kind": "exact"}
    params: dict[str, Any] = {"kind": "ivf", "nlist": int(index.nlist)}
    if isinstance(index, faiss.IndexIVFScalarQuantizer) and index.sq.qtype == faiss.ScalarQuantizer.QT_8bit:
        params["quantizer"] = "sq8"
    elif isinstance(index, faiss.IndexIVFPQ) and index.pq.nbits == 8:
        params.update(quantizer="pq", pq_m=int(index.pq.M))
    elif isinstance(index, faiss.IndexIVFFlat):
        params["quantizer"] = "flat"
    else:
        params["quantizer"] = type(index).__name__  # not one this code builds: matches no config
    return params


def index_ids(index: FaissIndex) -> np.ndarray:
    """All ids stored in ``index``, int64, unsorted."""
    if not is_ivf(index):
        return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    invlists = index.invlists
    parts = []
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size:
            parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def add(index: FaissIndex, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add float32 ``(n, dim)`` vectors under int64 ids."""
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))


def remove(index: FaissIndex, ids: np.ndarray) -> int:
    """Remove ids (absent ones are ignored); returns how many were removed."""
    return int(index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))


def search(
    index: FaissIndex, queries: np.ndarray, k: int, nprobe: int, among: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids) per query row, best first, padded with ``-inf``/``-1``.

    ``among`` restricts the search to these ids (a FAISS ``IDSelectorBatch``). For IVF, rows that found fewer
    than ``min(k, candidates)`` hits (a selective filter or sparse lists) are searched again with 4x ``nprobe``
    up to ``nlist``, so a query gets ``k`` hits whenever ``k`` candidates exist.
    """
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(among, dtype=np.int64)) if among is not None else None
    if not is_ivf(index):
        params = faiss.SearchParameters(sel=selector) if selector is not None else None  # type: ignore[call-arg]
        scores, ids = index.search(queries, k, params=params)
        return _pad(scores, ids)
    want = min(k, len(among) if among is not None else index.ntotal)
    probe = min(nprobe, index.nlist)
    rows = np.arange(len(queries))
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    while len(rows):
        params = faiss.SearchParametersIVF(nprobe=probe)  # type: ignore[call-arg]
        if selector is not None:
            params.sel = selector
        scores[rows], ids[rows] = index.search(queries[rows], k, params=params)
        if probe >= index.nlist:
            break
        rows = rows[(ids[rows] >= 0).sum(axis=1) < want]
        probe = min(probe * 4, index.nlist)
    return _pad(scores, ids)


def _pad(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    return scores, ids


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``queries @ vectors.T`` as (scores, ids), best first, padded with ``-inf``/``-1``."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    if len(ids) == 0:
        return scores, out_ids
    all_scores = queries @ vectors.T
    kk = min(k, len(ids))
    part = np.argpartition(-all_scores, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(all_scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    scores[:, :kk] = np.take_along_axis(part_scores, order, axis=1)
    out_ids[:, :kk] = ids[np.take_along_axis(part, order, axis=1)]
    return scores, out_ids


def rerank_exact(
    queries: np.ndarray, candidates: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each row's ``candidates`` (ids, ``-1`` = none) exactly against ``vectors`` (rows of ``ids``).

    Returns the top-``k`` (scores, ids) per query row, best first, padded with ``-inf``/``-1``; candidates absent
    from ``ids`` (deleted meanwhile) are dropped.
    """
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    if len(ids) == 0:
        return scores, out_ids
    order = np.argsort(ids)
    sorted_ids = ids[order]
    for row, (query, cand) in enumerate(zip(queries, candidates, strict=True)):
        cand = cand[cand >= 0]
        pos = np.minimum(np.searchsorted(sorted_ids, cand), len(sorted_ids) - 1)
        known = order[pos[sorted_ids[pos] == cand]]  # rows of ``vectors`` of the candidates still stored
        scores[row], out_ids[row] = exact_top_k(query[None], vectors[known], ids[known], k)
    return scores, out_ids


def merge_top_k(results: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-index (scores, ids) results of the same queries into the overall top-``k``."""
    if len(results) == 1:
        return results[0]
    scores = np.concatenate([s for s, _ in results], axis=1)
    ids = np.concatenate([i for _, i in results], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def clone(index: FaissIndex) -> FaissIndex:
    """A deep copy of ``index`` (ids, codes, trained state): memory for a second copy while it lives."""
    return faiss.clone_index(index)


def write(index: FaissIndex, path: Path) -> None:
    """Write ``index`` to ``path`` atomically, streaming from memory (no serialised copy of the index)."""
    atomic_write(path, lambda tmp: faiss.write_index(index, str(tmp)))


def read(path: Path) -> FaissIndex:
    """Read an index written by ``write``; raises ``RuntimeError`` if the file is unreadable."""
    return faiss.read_index(str(path))

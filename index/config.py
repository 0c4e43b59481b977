"""Typed configuration of the gallery's FAISS index (pure data; the service settings embed it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from common.config import Frozen
from index.vector_storage import VectorDtype

# Fields that change what is stored in the index file; a change to any of them rebuilds the index on open.
BUILD_FIELDS: tuple[str, ...] = ("kind", "nlist", "quantizer", "pq_m", "train_min")


class IndexConfig(Frozen):
    """Which FAISS index each modality of the gallery uses.

    ``kind="exact"`` (default): ``IndexIDMap2(IndexFlatIP)``, brute-force inner product, exact results.
    ``kind="ivf"``: an inverted-file index (``IndexIVFScalarQuantizer`` for ``sq8``, ``IndexIVFPQ`` for ``pq``,
    ``IndexIVFFlat`` for ``flat``) with native 64-bit ids and a hashtable direct map, so ``remove_ids`` and
    ``reconstruct`` work. An IVF index needs training: a modality stays exact until it holds ``train_min`` items
    (default ``39 * nlist``, FAISS's minimum for k-means), then the IVF index is trained on its vectors and
    replaces the exact one. The defaults are the benchmarked approximate setting (docs/benchmarks-search.md).
    With ``rerank > 1`` an IVF search takes ``top_k * rerank`` candidates from the index and orders them by their
    exact scores against the stored float32 vectors, so the scores returned (and ``min_score``) are exact; the
    candidate set itself stays approximate. ``vector_dtype="float16"`` stores those vectors in half precision
    (scores then within 1e-3 of float32's; docs/benchmarks.md measures it).
    """

    kind: Literal["exact", "ivf"] = "exact"
    nlist: int = Field(default=2048, ge=1, description="IVF: number of inverted lists (k-means centroids)")
    nprobe: int = Field(default=32, ge=1, description="IVF: lists visited per query (search time, no rebuild)")
    quantizer: Literal["sq8", "pq", "flat"] = Field(default="sq8", description="IVF: code of the stored vectors")
    pq_m: int = Field(default=64, ge=1, description="IVF-PQ: sub-quantisers (8-bit each); must divide the dimension")
    train_min: int | None = Field(default=None, ge=1, description="IVF: items per modality before IVF is built")
    rerank: int = Field(
        default=4,
        ge=1,
        description="IVF: fetch top_k x rerank candidates and re-score them exactly from the stored vectors; 1 = off",
    )
    filter_exact_limit: int = Field(
        default=2048, ge=0, description="label/camera filters matching at most this many items are scored exactly"
    )
    checkpoint_every: int = Field(
        default=10_000, ge=1, description="changes after which the index files are snapshotted (bounds replay on open)"
    )
    vector_dtype: VectorDtype = Field(
        default="float32",
        description="precision of the vectors in metadata.sqlite (float16 halves them; FAISS stays float32 in memory); "
        "a change converts the stored vectors on the next open",
    )

    @model_validator(mode="after")
    def _check_nprobe(self) -> IndexConfig:
        if self.nprobe > self.nlist:
            raise ValueError(f"nprobe={self.nprobe} exceeds nlist={self.nlist}; choose nprobe <= nlist")
        return self

    @property
    def train_threshold(self) -> int:
        """Items per modality at which an exact index is replaced by the IVF index."""
        return self.train_min if self.train_min is not None else 39 * self.nlist

    def build_params(self) -> dict[str, Any]:
        """The fields that determine the stored index (search-time fields excluded)."""
        if self.kind == "exact":
            return {"kind": "exact"}
        return {name: getattr(self, name) for name in BUILD_FIELDS}

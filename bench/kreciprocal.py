"""What k-reciprocal re-ranking (``/search?rerank=true``) costs over a plain search, through the real gallery.

    python -m bench.kreciprocal --sizes 2000,20000 --depths 25,50,100 --dim 2048

Not the IVF exact re-rank of ``bench/rerank.py``. For each gallery size, fills a flat ``FaissGallery`` with
clustered unit vectors (``views`` noisy views per identity), then times, interleaved over ``--rounds`` rounds,
single-query ``gallery.search`` (top-k) and ``index.reranked_search.reranked_search`` with each candidate depth
(the query's best N plus the k1 + 1 nearest gallery neighbours of each, re-ranked), and prints the p50 latencies
and their ratio to the plain search measured in the same run, with the mean size of the re-ranked set.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from bench.rerank import unit_rows, views
from common.modality import Modality
from index.base import NewItem
from index.gallery import FaissGallery
from index.kreciprocal import K1, K2, LAMBDA, KReciprocalParams, candidate_set
from index.reranked_search import reranked_search


def filled_gallery(directory: Path, vectors: np.ndarray) -> FaissGallery:
    """A flat gallery holding ``vectors`` as visible items (ids 1..n)."""
    gallery = FaissGallery.open(directory, vectors.shape[1], "bench")
    for start in range(0, len(vectors), 5000):
        gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in vectors[start : start + 5000]])
    return gallery


def set_size(vectors: np.ndarray, query: np.ndarray, depth: int, k1: int) -> int:
    """How many gallery vectors the re-ranking of ``query`` at ``depth`` works on (exact, by numpy)."""
    top = np.argsort(-(vectors @ query))[:depth]
    neighbours = np.argsort(-(vectors[top] @ vectors.T), axis=1)[:, : k1 + 1]
    return len(candidate_set(top, neighbours))


def measure(gallery: FaissGallery, queries: np.ndarray, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per-query latencies (ms) of the plain search (``"plain"``) and of each re-ranking depth (``"N"``)."""
    params = KReciprocalParams(args.k1, args.k2, args.lam)
    times: dict[str, list[float]] = {"plain": [], **{str(d): [] for d in args.depths}}
    for _ in range(args.rounds):
        for q in queries:
            t0 = time.perf_counter()
            gallery.search(q[None], args.top_k)
            times["plain"].append((time.perf_counter() - t0) * 1e3)
            for depth in args.depths:
                t0 = time.perf_counter()
                reranked_search(gallery, q[None], args.top_k, params=params, candidates=depth)
                times[str(depth)].append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one table per gallery size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[2000, 20000])
    parser.add_argument("--depths", type=lambda s: [int(x) for x in s.split(",")], default=[25, 50, 100])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--k1", type=int, default=K1)
    parser.add_argument("--k2", type=int, default=K2)
    parser.add_argument("--lam", type=float, default=LAMBDA)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads for FAISS (default %(default)s)")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    print(
        f"dim {args.dim}, flat index, top-{args.top_k}, k1={args.k1} k2={args.k2} lambda={args.lam}, "
        f"{args.queries} queries x {args.rounds} rounds, {args.threads} FAISS threads, p50 of single-query searches"
    )
    print("gallery | search | depth | re-ranked set | p50 ms | ratio to plain search")
    for size in args.sizes:
        centres = unit_rows(np.random.default_rng(0), -(-size // args.views), args.dim)
        owners = np.arange(size) // args.views
        vectors = views(centres, owners, np.random.default_rng(1))
        picks = np.random.default_rng(2).choice(size, args.queries, replace=False)
        queries = views(centres, owners[picks], np.random.default_rng(3))
        with tempfile.TemporaryDirectory() as tmp:
            gallery = filled_gallery(Path(tmp) / "gallery", vectors)
            times = measure(gallery, queries, args)
            gallery.close()
        plain = float(np.percentile(times["plain"], 50))
        print(f"{size:7d} | plain  |     - |             - | {plain:6.2f} | 1.00x")
        for depth in args.depths:
            members = np.mean([set_size(vectors, q, depth, args.k1) for q in queries])
            p50 = float(np.percentile(times[str(depth)], 50))
            print(f"{size:7d} | rerank | {depth:5d} | {members:13.0f} | {p50:6.2f} | {p50 / plain:.1f}x")


if __name__ == "__main__":
    main()

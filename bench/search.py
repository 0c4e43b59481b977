"""Exact vs approximate (IVF) gallery search on clustered synthetic embeddings; prints ratios from one run.

    python bench/search.py --size 1000000 --dim 2048            # the issue's 1M x 2048 configuration
    python bench/search.py --size 100000 --dim 8192 --nlist 1024
    python -m bench.search --backend milvus --size 100000 --dim 2048   # FAISS vs Milvus Lite vs a Milvus server

Data: ``size / views`` identities, each a centre mixed from one of ``groups`` shared directions (so identities
of a group are alike, as people in similar clothes are) plus its own direction; each gallery row is a noisy view
of its identity, L2-normalised. Queries are fresh noisy views of random identities. The gallery is generated in
chunks of ``--chunk`` rows from per-chunk seeds, so the raw float32 matrix (8 GiB at 1M x 2048) is never held:
each chunk is added to the IVF index, scanned exactly for the ground truth (running top-k) and dropped.

Exact latency is the sum, over chunks, of the measured single-query ``IndexFlatIP`` scan time of that chunk (the
same arithmetic as one flat index over all rows, which would not fit the memory budget at 1M x 8192).
The approximate index is the gallery's own (``index.vector_index.new_ivf`` / ``search``, ``IndexConfig``).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from index import vector_index as vi
from index.config import IndexConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000, help="gallery rows")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--views", type=int, default=8, help="gallery views per identity")
    p.add_argument("--groups", type=int, default=1000, help="shared directions identities are mixed from")
    p.add_argument("--group-weight", type=float, default=0.6, help="weight of the group direction in a centre")
    p.add_argument("--noise", type=float, default=0.7, help="view noise norm relative to the unit centre")
    p.add_argument("--queries", type=int, default=1000, help="queries for recall@10")
    p.add_argument("--latency-queries", type=int, default=200, help="single-query calls timed on the IVF index")
    p.add_argument("--exact-latency-queries", type=int, default=50, help="single-query calls timed exactly")
    p.add_argument("--chunk", type=int, default=50_000, help="rows generated at a time")
    p.add_argument("--nlist", type=int, default=IndexConfig().nlist)
    p.add_argument("--nprobe", type=int, nargs="+", default=[IndexConfig().nprobe])
    p.add_argument("--quantizer", choices=["sq8", "pq", "flat"], default=IndexConfig().quantizer)
    p.add_argument("--pq-m", type=int, default=IndexConfig().pq_m)
    p.add_argument("--threads", type=int, default=2, help="OpenMP threads for FAISS")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--backend",
        choices=["faiss", "milvus"],
        default="faiss",
        help="faiss: exact vs IVF (this module); milvus: FAISS gallery vs Milvus Lite and server (search_backends)",
    )
    p.add_argument("--milvus-index", nargs="+", default=["FLAT", "HNSW", "IVF_SQ8"], help="server index types")
    p.add_argument("--batch", type=int, default=1000, help="--backend milvus: items per Gallery.add")
    return p.parse_args(argv)


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class SyntheticGallery:
    """Deterministic clustered embeddings, generated chunk by chunk (identities never straddle chunks)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ids_per_chunk = max(1, args.chunk // args.views)
        self.rows_per_chunk = self.ids_per_chunk * args.views
        self.num_chunks = -(-args.size // self.rows_per_chunk)
        rng = np.random.default_rng([args.seed, 0])
        self.groups = _normalise(rng.standard_normal((args.groups, args.dim), dtype=np.float32))

    def _rows(self, chunk: int) -> int:
        return min(self.rows_per_chunk, self.args.size - chunk * self.rows_per_chunk)

    def centres(self, chunk: int) -> np.ndarray:
        """Unit identity centres of one chunk."""
        a = self.args
        n_ids = -(-self._rows(chunk) // a.views)
        rng = np.random.default_rng([a.seed, 1, chunk])
        own = _normalise(rng.standard_normal((n_ids, a.dim), dtype=np.float32))
        group = self.groups[rng.integers(0, a.groups, n_ids)]
        return _normalise(a.group_weight * group + np.sqrt(1 - a.group_weight**2) * own)

    def views(self, centres: np.ndarray, n: int, rng: np.random.Generator, owners: np.ndarray) -> np.ndarray:
        """``n`` noisy unit views of ``centres[owners]``."""
        noise = _normalise(rng.standard_normal((n, self.args.dim), dtype=np.float32))
        return _normalise(centres[owners] + self.args.noise * noise)

    def chunk(self, chunk: int) -> np.ndarray:
        """Gallery rows of one chunk (row ``r`` of the gallery is identity ``r // views``)."""
        rows = self._rows(chunk)
        owners = np.arange(rows) // self.args.views
        return self.views(self.centres(chunk), rows, np.random.default_rng([self.args.seed, 2, chunk]), owners)

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) of every chunk in order."""
        for c in range(self.num_chunks):
            yield c * self.rows_per_chunk, self.chunk(c)

    def queries(self, n: int) -> np.ndarray:
        """``n`` fresh views of random identities, spread over the chunks."""
        per_chunk = np.bincount(
            np.random.default_rng([self.args.seed, 3]).integers(0, self.num_chunks, n), minlength=self.num_chunks
        )
        out = []
        for c, m in enumerate(per_chunk):
            if m:
                centres = self.centres(c)
                rng = np.random.default_rng([self.args.seed, 4, c])
                out.append(self.views(centres, int(m), rng, rng.integers(0, len(centres), int(m))))
        return np.concatenate(out)


def rss_gib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in GiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def ivf_bytes(index: faiss.Index) -> int:
    """Bytes held by an IVF index: codes, ids, centroids and the id hashtable (about 32 B per entry)."""
    entries = index.ntotal
    return entries * (index.code_size + 8 + 32) + index.nlist * index.d * 4


def latencies(search_one: object, queries: np.ndarray) -> np.ndarray:
    """Per-query wall times in ms of ``search_one(q)`` for each row."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search_one(q[None, :])  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1e3)
    return np.array(times)


def run(args: argparse.Namespace) -> None:
    """Build both indexes chunk by chunk, time searches, print the table."""
    faiss.omp_set_num_threads(args.threads)
    data = SyntheticGallery(args)
    queries = data.queries(args.queries)
    lat_q = queries[: args.latency_queries]
    exact_q = queries[: args.exact_latency_queries]
    config = IndexConfig(
        kind="ivf", nlist=args.nlist, nprobe=min(args.nprobe), quantizer=args.quantizer, pq_m=args.pq_m
    )
    print(
        f"gallery {args.size} x {args.dim} ({data.num_chunks} chunks), {args.queries} queries, "
        f"IVF nlist={args.nlist} {args.quantizer}, {args.threads} threads"
    )
    n_train = min(args.size, 64 * args.nlist)
    train = np.concatenate([data.chunk(c) for c in range(-(-n_train // data.rows_per_chunk))])[:n_train].copy()
    t0 = time.perf_counter()
    index = vi.new_ivf(config, args.dim, train)
    train_s = time.perf_counter() - t0
    del train
    add_s, gt_s = 0.0, 0.0
    exact_ms = np.zeros(len(exact_q))
    gt_scores = np.full((len(queries), args.k), -np.inf, dtype=np.float32)
    gt_ids = np.full((len(queries), args.k), -1, dtype=np.int64)
    for first, rows in data.chunks():
        ids = np.arange(first, first + len(rows), dtype=np.int64)
        t0 = time.perf_counter()
        vi.add(index, ids, rows)
        add_s += time.perf_counter() - t0
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(rows)
        t0 = time.perf_counter()
        s, i = flat.search(queries, args.k)
        gt_s += time.perf_counter() - t0
        gt_scores, gt_ids = vi.merge_top_k([(gt_scores, gt_ids), (s, i + first)], args.k)
        exact_ms += latencies(lambda q, f=flat: f.search(q, args.k), exact_q)
        del flat, rows
    build_s = train_s + add_s
    rss, peak = rss_gib()
    print(
        f"build (train {train_s:.1f} s on {n_train} vectors + add {add_s:.1f} s) = {build_s:.1f} s; "
        f"index {ivf_bytes(index) / 2**30:.2f} GiB (float32 vectors {args.size * args.dim * 4 / 2**30:.2f} GiB); "
        f"RSS {rss:.2f} GiB, peak {peak:.2f} GiB"
    )
    print(
        f"exact: p50 {np.percentile(exact_ms, 50):.2f} ms  p99 {np.percentile(exact_ms, 99):.2f} ms per query; "
        f"batched ground truth {gt_s / len(queries) * 1e3:.2f} ms/query"
    )
    print(f"{'nprobe':>6} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8} {'p50 speed-up':>12}")
    for nprobe in args.nprobe:
        _, ann_ids = vi.search(index, queries, args.k, nprobe)
        recall = np.mean([len(np.intersect1d(a, g)) / args.k for a, g in zip(ann_ids, gt_ids, strict=True)])
        ms = latencies(lambda q, p=nprobe: vi.search(index, q, args.k, p), lat_q)
        p50 = np.percentile(ms, 50)
        print(
            f"{nprobe:>6} {recall:>9.4f} {p50:>8.2f} {np.percentile(ms, 99):>8.2f} "
            f"{np.percentile(exact_ms, 50) / p50:>11.1f}x"
        )
    same_id = np.mean(gt_ids // args.views == gt_ids[:, :1] // args.views)
    print(
        f"data: {same_id:.3f} of exact top-{args.k} share the top-1 identity; "
        f"top-1 score {gt_scores[:, 0].mean():.3f}, top-{args.k} score {gt_scores[:, -1].mean():.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.backend == "milvus":
        from bench.search_backends import run_backends

        faiss.omp_set_num_threads(args.threads)
        run_backends(args, SyntheticGallery(args))
    else:
        run(args)


if __name__ == "__main__":
    main()

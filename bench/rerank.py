"""What the exact re-rank of IVF candidates costs and buys, through the real gallery; prints ratios from one run.

    python bench/rerank.py --size 50000 --dim 2048 --nlist 256 --nprobe 16

Fills a ``FaissGallery`` (IVF-SQ8, SQLite) with clustered unit vectors (``size / views`` identities, ``views``
noisy views each), then times single-query ``gallery.search`` (top-k) with ``rerank=1`` (the index's SQ8 scores)
and with ``--rerank`` (top-k x rerank candidates re-scored from the stored float32 vectors), interleaved over
``--rounds`` rounds, and reports latency ratios, recall@k against exact search, and the largest score error.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common.modality import Modality
from index.base import NewItem
from index.config import IndexConfig
from index.gallery import FaissGallery


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random L2-normalised float32 rows."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def views(centres: np.ndarray, owners: np.ndarray, rng: np.random.Generator, noise: float = 0.6) -> np.ndarray:
    """One noisy unit view of ``centres[owner]`` per entry of ``owners``."""
    x = centres[owners] + noise * unit_rows(rng, len(owners), centres.shape[1])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--nlist", type=int, default=256)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--rerank", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    centres = unit_rows(np.random.default_rng(0), -(-args.size // args.views), args.dim)
    owners = np.arange(args.size) // args.views  # row r of the gallery is a view of identity r // views
    vectors = views(centres, owners, np.random.default_rng(1))
    picks = np.random.default_rng(2).choice(args.size, args.queries, replace=False)
    queries = views(centres, owners[picks], np.random.default_rng(3))  # fresh views of gallery identities
    exact_ids = np.argsort(-(queries @ vectors.T), axis=1)[:, : args.top_k] + 1  # gallery ids start at 1
    base = IndexConfig(kind="ivf", nlist=args.nlist, nprobe=args.nprobe, train_min=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gallery"
        gallery = FaissGallery.open(directory, args.dim, "bench", config=base)
        for start in range(0, args.size, 5000):
            gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in vectors[start : start + 5000]])
        gallery.wait_idle()  # the IVF training that the last add made due
        gallery.close()
        galleries = {  # a copy each: a gallery directory is open in one place at a time
            r: FaissGallery.open(
                shutil.copytree(directory, Path(tmp) / f"gallery-rerank{r}"),
                args.dim,
                "bench",
                config=base.model_copy(update={"rerank": r}),
            )
            for r in (1, args.rerank)
        }
        times: dict[int, list[float]] = {r: [] for r in galleries}
        for _ in range(args.rounds):
            for r, g in galleries.items():
                for q in queries:
                    t0 = time.perf_counter()
                    g.search(q[None], args.top_k)
                    times[r].append(time.perf_counter() - t0)
        print(
            f"{args.size} x {args.dim}, IVF{args.nlist}-SQ8 nprobe {args.nprobe}, top-{args.top_k}, "
            f"{args.queries} queries x {args.rounds} rounds, single-query gallery.search"
        )
        print("rerank | p50 ms | p99 ms | recall@k | max |score error|")
        p50 = {}
        for r, g in galleries.items():
            rows = g.search(queries, args.top_k)
            got = [[m.item.id for m in row] for row in rows]
            recall = np.mean([len(set(a) & set(b.tolist())) / args.top_k for a, b in zip(got, exact_ids, strict=True)])
            error = max(
                abs(m.score - float(vectors[m.item.id - 1] @ q))
                for row, q in zip(rows, queries, strict=True)
                for m in row
            )
            t = np.array(times[r]) * 1e3
            p50[r] = float(np.percentile(t, 50))
            print(f"{r:6d} | {p50[r]:6.2f} | {np.percentile(t, 99):6.2f} | {recall:8.3f} | {error:.2e}")
            g.close()
        print(f"p50 ratio rerank {args.rerank} / rerank 1: {p50[args.rerank] / p50[1]:.2f}x")


if __name__ == "__main__":
    main()

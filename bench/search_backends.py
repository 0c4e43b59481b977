"""``bench/search.py --backend milvus``: the FAISS gallery beside Milvus Lite and a local Milvus server, one run.

Every backend is the gallery the service would open (``index.factory.open_gallery``) and gets the same generated
rows through ``Gallery.add`` (batches of ``--batch``) and the same queries through ``Gallery.search``. Ground truth is
exact inner-product top-k over all rows (FAISS ``IndexFlatIP`` per chunk, merged). Per backend: build time (adds,
plus for Milvus the flush and the wait for its vector index), recall@k against the ground truth, p50/p99 of
single-query searches, and the resident memory the vectors cost: for FAISS and Milvus Lite (which runs inside this
process) the growth of this process's RSS over the build, for the server the server process's RSS after the build.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pymilvus import MilvusClient

from bench.milvus_server import LocalMilvusServer
from common.modality import Modality
from index import vector_index as vi
from index.base import Gallery, NewItem
from index.config import IndexConfig
from index.factory import AnyIndexConfig, open_gallery
from index.milvus.config import MilvusConfig
from index.milvus.gallery import MilvusGallery
from index.milvus.schema import ID_SUFFIX


def rss_gib(pid: int | str = "self") -> float:
    """Resident set size of a process in GiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def ground_truth(data: Any, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact top-k of each query over every generated row."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for first, rows in data.chunks():
        flat = faiss.IndexFlatIP(rows.shape[1])
        flat.add(rows)
        s, i = flat.search(queries, k)
        scores, ids = vi.merge_top_k([(scores, ids), (s, i + first)], k)
    return ids


def build(gallery: Gallery, data: Any, batch: int) -> tuple[np.ndarray, float]:
    """Add every generated row; returns (gallery id of each row, seconds)."""
    ids: list[int] = []
    t0 = time.perf_counter()
    for _, rows in data.chunks():
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            ids += gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in part])
    if isinstance(gallery, MilvusGallery):
        gallery.seal_and_index()
    return np.asarray(ids, dtype=np.int64), time.perf_counter() - t0


def measure(
    gallery: Gallery, row_of: dict[int, int], queries: np.ndarray, gt: np.ndarray, args: Any
) -> dict[str, float]:
    """Recall@k (batched searches) and single-query latency percentiles of one gallery."""
    found = []
    for start in range(0, len(queries), 100):
        for hits in gallery.search(queries[start : start + 100], args.k):
            found.append([row_of[m.item.id] for m in hits])
    recall = float(np.mean([len(np.intersect1d(f, g)) / args.k for f, g in zip(found, gt, strict=True)]))
    ms = []
    for q in queries[: args.latency_queries]:
        t0 = time.perf_counter()
        gallery.search(q[None, :], args.k)
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"recall": recall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def drop_collections(config: MilvusConfig) -> None:
    """Drop a benchmarked collection and its id companion."""
    client = MilvusClient(uri=config.uri)
    for name in (config.collection_name("bench"), config.collection_name("bench") + ID_SUFFIX):
        client.drop_collection(name)
    client.close()


def milvus(uri: str, name: str, index_type: str, consistency: str = "Strong") -> MilvusConfig:
    """The Milvus config of one benchmarked collection."""
    return MilvusConfig.model_validate(
        {
            "kind": "milvus",
            "uri": uri,
            "collection": name,
            "index_type": index_type,
            "consistency": consistency,
            "timeout_s": 600.0,  # a bulk write of 1000 x 2048 on a busy machine, and index builds
        }
    )


Row = tuple[str, float, dict[str, float], float]  # name, build seconds, measures, memory GiB


def report(row: Row, base_p50: float) -> None:
    """Print one backend's line of the table (as soon as it is measured: a long run shows its progress)."""
    name, build_s, m, mem = row
    print(
        f"{name:<36} {build_s:>8.1f} {m['recall']:>7.4f} {m['p50']:>8.2f} {m['p99']:>8.2f} "
        f"{m['p50'] / base_p50:>10.2f}x {mem:>8.2f}",
        flush=True,
    )


def run_backends(args: argparse.Namespace, data: Any) -> None:
    """Build and measure each backend on the same rows and queries; print one table with ratios to FAISS."""
    queries = data.queries(args.queries)
    gt = ground_truth(data, queries, args.k)
    print(f"gallery {args.size} x {args.dim}, {args.queries} queries, recall@{args.k}, batches of {args.batch}")
    results: list[Row] = []
    print(
        f"{'backend':<36} {'build s':>8} {'recall':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50 / faiss':>11} {'RSS GiB':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        server = LocalMilvusServer(Path(tmp) / "server")
        server.start()
        try:
            specs: list[tuple[str, AnyIndexConfig, Callable[[], float]]] = [
                ("faiss exact (FaissGallery)", IndexConfig(), rss_gib),
                ("milvus-lite FLAT", milvus(str(Path(tmp) / "lite.db"), "b_flat", "FLAT"), rss_gib),
            ]
            for index_type in args.milvus_index:
                specs.append(
                    (
                        f"milvus-server {index_type}",
                        milvus(server.uri, f"b_{index_type.lower()}", index_type),
                        lambda: rss_gib(server.proc.pid if server.proc else 0),
                    )
                )
            for name, config, memory in specs:
                before = rss_gib() if memory is rss_gib else 0.0
                gallery = open_gallery(config, Path(tmp) / "faiss", args.dim, "bench", "bench")
                ids, build_s = build(gallery, data, args.batch)
                row_of = {int(i): r for r, i in enumerate(ids)}
                mem = memory() - before
                results.append((name, build_s, measure(gallery, row_of, queries, gt, args), mem))
                report(results[-1], results[0][2]["p50"])
                if isinstance(config, MilvusConfig) and config.index_type == "FLAT" and not config.uri.endswith(".db"):
                    bounded = open_gallery(
                        config.model_copy(update={"consistency": "Bounded"}), Path(tmp), args.dim, "bench"
                    )
                    results.append((f"{name} Bounded reads", build_s, measure(bounded, row_of, queries, gt, args), mem))
                    report(results[-1], results[0][2]["p50"])
                    bounded.close()
                gallery.close()
                if isinstance(config, MilvusConfig):  # free the server's memory for the next backend
                    drop_collections(config)
        finally:
            server.close()

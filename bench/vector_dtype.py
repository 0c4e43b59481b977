"""Gallery vectors at rest in float16 vs float32: SQLite size and the search scores, measured in one run.

Usage: ``python -m bench.vector_dtype [--dims 512 8192] [--items 2000] [--queries 100]``

For each dimension, the same ``--items`` random unit vectors (clustered: ten noisy views per identity, like
re-identification embeddings) go into two exact galleries (``index.gallery.FaissGallery``), one with
``vector_dtype=float32`` and one with ``float16``; then the float32 one is reopened with ``float16`` (the in-place
conversion). Printed: ``metadata.sqlite`` sizes and their ratio, the converted file's ratio, the largest
difference between a float16 gallery's score and the float32 inner product of the same pair over the top 10 of
``--queries`` queries (views of the gallery identities), and how many top-10 lists are identical.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from bench.table import print_header
from common.modality import Modality
from index.base import NewItem
from index.config import IndexConfig
from index.gallery import FaissGallery
from index.metadata import SQLITE_NAME
from index.vector_storage import VectorDtype

MODEL = "bench-dtype"
VIEWS = 10


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` gallery vectors (``VIEWS`` per identity) and one more view per identity as queries."""
    centres = rng.standard_normal((n // VIEWS, dim))
    gallery = unit_rows(np.repeat(centres, VIEWS, axis=0) + 0.8 * rng.standard_normal((n // VIEWS * VIEWS, dim)))
    queries = unit_rows(centres + 0.8 * rng.standard_normal(centres.shape))
    return gallery, queries


def build(directory: Path, vectors: np.ndarray, dtype: VectorDtype) -> list[int]:
    """A closed exact gallery holding ``vectors``; returns their ids."""
    config = IndexConfig(vector_dtype=dtype)
    with FaissGallery.open(directory, vectors.shape[1], MODEL, config=config) as gallery:
        return gallery.add([NewItem(embedding=v, modality=Modality.INFRARED) for v in vectors])


def top10(directory: Path, dim: int, dtype: VectorDtype, queries: np.ndarray) -> list[list[tuple[int, float]]]:
    """(id, score) top 10 of each query, opening the gallery with ``dtype`` (converting it if it differs)."""
    config = IndexConfig(vector_dtype=dtype)
    with FaissGallery.open(directory, dim, MODEL, config=config) as gallery:
        return [[(m.item.id, m.score) for m in row] for row in gallery.search(queries, 10)]


def mb(path: Path) -> float:
    """File size in MB."""
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 8192])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the conversion's log lines would break the table
    print(f"{args.items} gallery vectors ({VIEWS} views per identity), {args.queries} queries, top 10, exact index")
    print_header(
        ("dim", 5),
        ("f32 MB", 7),
        ("f16 MB", 7),
        ("f16/f32", 7),
        ("converted/f32", 13),
        ("max |score diff|", 16),
        ("same top-10", 11),
    )
    for dim in args.dims:
        rng = np.random.default_rng(dim)
        vectors, queries = clustered(args.items, dim, rng)
        queries = queries[: args.queries]
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            ids = build(tmp / "f32", vectors, "float32")
            build(tmp / "f16", vectors, "float16")
            size32, size16 = mb(tmp / "f32" / SQLITE_NAME), mb(tmp / "f16" / SQLITE_NAME)
            exact = top10(tmp / "f32", dim, "float32", queries)
            half = top10(tmp / "f16", dim, "float16", queries)
            converted = top10(tmp / "f32", dim, "float16", queries)  # reopened with float16: converted in place
            size_converted = mb(tmp / "f32" / SQLITE_NAME)
        position = {item: k for k, item in enumerate(ids)}
        diffs = [
            abs(score - float(q @ vectors[position[item]]))
            for result in (half, converted)
            for q, row in zip(queries, result, strict=True)
            for item, score in row
        ]
        same = sum(
            [i for i, _ in a] == [i for i, _ in b] == [i for i, _ in c]
            for a, b, c in zip(exact, half, converted, strict=True)
        )
        print(
            f"{dim:>5} | {size32:>7.1f} | {size16:>7.1f} | {size16 / size32:>7.3f} | "
            f"{size_converted / size32:>13.3f} | {max(diffs):>16.2e} | {same:>5}/{len(queries):<5}",
            flush=True,
        )


if __name__ == "__main__":
    main()

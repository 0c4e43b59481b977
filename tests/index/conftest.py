"""Shared helpers for the gallery tests: unit vectors, items, brute-force search, gallery state snapshots."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from common.modality import Modality
from index.base import NewItem
from index.config import IndexConfig
from index.gallery import FaissGallery

if TYPE_CHECKING:
    from tests.index.backends import Backend

DIM = 16
MODEL = "abc123def456"


def unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """``n`` random L2-normalised float32 rows."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n_ids: int, views: int, dim: int, noise: float = 0.6, seed: int = 0) -> np.ndarray:
    """``n_ids * views`` unit rows, ``views`` noisy views per identity (row r is identity r // views)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise_rows = rng.standard_normal((n_ids * views, dim)).astype(np.float32)
    noise_rows /= np.linalg.norm(noise_rows, axis=1, keepdims=True)
    x = np.repeat(centres, views, axis=0) + noise * noise_rows
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items_for(vectors: np.ndarray, seed: int = 0) -> list[NewItem]:
    """Items with varied modality, label (``p0``..``p4``) and camera (``c0``..``c2``)."""
    rng = np.random.default_rng(seed)
    return [
        NewItem(
            embedding=v,
            modality=Modality.VISIBLE if rng.random() < 0.5 else Modality.INFRARED,
            label=f"p{rng.integers(5)}",
            camera=f"c{rng.integers(3)}",
            captured_at="2026-01-01T00:00:00Z",
            source=f"img{i}.jpg",
            sha256=f"{i:064x}",
            extra={"i": i},
        )
        for i, v in enumerate(vectors)
    ]


def brute_force(
    queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int, min_score: float | None = None
) -> list[list[tuple[int, float]]]:
    """Reference top-k by numpy: (id, score) lists, best first."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(int(ids[j]), float(row[j])) for j in order if min_score is None or row[j] >= min_score])
    return out


OpenGallery = Callable[..., FaissGallery]


@pytest.fixture
def open_gallery(tmp_path: Path) -> OpenGallery:
    """Open (or reopen) the gallery in ``tmp_path / 'g'``; galleries still open at teardown are closed."""
    opened: list[FaissGallery] = []

    def _open(config: IndexConfig | None = None, dim: int = DIM, model_version: str = MODEL) -> FaissGallery:
        gallery = FaissGallery.open(tmp_path / "g", dim, model_version, git_sha="deadbeef", config=config)
        opened.append(gallery)
        return gallery

    yield _open
    for gallery in opened:
        gallery.close()


# The gallery contract (tests/index/test_gallery_contract.py) runs on each backend; the real server is slow to start.
BACKENDS = [
    pytest.param("faiss", id="faiss"),
    pytest.param("lite", id="milvus-lite"),
    pytest.param("server", id="milvus-server", marks=pytest.mark.slow),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each gallery backend in turn, on fresh storage (``tests/index/backends.py``)."""
    from tests.index.backends import make_backend

    made = make_backend(request.param, tmp_path, request)
    yield made
    made.close_all()

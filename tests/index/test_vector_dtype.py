"""Vectors at rest in float16: half the SQLite size, scores within 1e-3, conversion in place on reopen, crash-safe."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from index import vector_index as vi
from index.base import NewItem
from index.config import IndexConfig
from index.gallery import FaissGallery
from index.manifest import Manifest
from index.metadata import SQLITE_NAME
from index.vector_storage import decode
from tests.index.conftest import MODEL, brute_force, unit

REPO = Path(__file__).resolve().parents[2]
DIM = 512
F16 = IndexConfig(vector_dtype="float16")
IVF_F16 = IndexConfig(kind="ivf", nlist=4, nprobe=2, train_min=100, rerank=4, vector_dtype="float16")


def fill(directory: Path, vectors: np.ndarray, config: IndexConfig) -> list[int]:
    """A closed gallery in ``directory`` holding ``vectors`` (infrared, no metadata)."""
    with FaissGallery.open(directory, DIM, MODEL, config=config) as gallery:
        ids = gallery.add([NewItem(embedding=v, modality=Modality.INFRARED) for v in vectors])
        gallery.wait_idle()
    return ids


def blob_lengths(directory: Path) -> set[int]:
    """The distinct byte lengths of the stored vectors."""
    with sqlite3.connect(directory / SQLITE_NAME) as conn:
        return {n for (n,) in conn.execute("SELECT DISTINCT length(embedding) FROM vectors")}


def test_float16_halves_the_vectors_in_sqlite(tmp_path: Path) -> None:
    vectors = unit(400, DIM, seed=1)
    fill(tmp_path / "f32", vectors, IndexConfig())
    fill(tmp_path / "f16", vectors, F16)
    assert blob_lengths(tmp_path / "f32") == {DIM * 4} and blob_lengths(tmp_path / "f16") == {DIM * 2}
    ratio = (tmp_path / "f16" / SQLITE_NAME).stat().st_size / (tmp_path / "f32" / SQLITE_NAME).stat().st_size
    assert ratio < 0.6, ratio
    assert Manifest.read(tmp_path / "f16").index["vector_dtype"] == "float16"


@pytest.mark.parametrize("config", [F16, IVF_F16], ids=["exact", "ivf-rerank"])
def test_float16_scores_stay_within_1e_3_of_float32(tmp_path: Path, config: IndexConfig) -> None:
    vectors, queries = unit(300, DIM, seed=2), unit(8, DIM, seed=3)
    ids = np.array(fill(tmp_path / "g", vectors, config))
    with FaissGallery.open(tmp_path / "g", DIM, MODEL, config=config) as gallery:
        assert vi.is_ivf(gallery._indexes[Modality.INFRARED]) == (config.kind == "ivf")
        stored = gallery.vectors(ids.tolist())
        assert stored.dtype == np.float32 and np.abs(stored - vectors).max() < 1e-3
        position = {int(i): k for k, i in enumerate(ids)}
        results = gallery.search(queries, 10)
        for query, row, expected in zip(queries, results, brute_force(queries, vectors, ids, 10), strict=True):
            assert len(row) == 10
            for match in row:  # every score returned is the float32 inner product, to 1e-3
                assert abs(match.score - float(query @ vectors[position[match.item.id]])) < 1e-3
            if config.kind == "exact":  # and the exact ranking is float32's
                assert [m.item.id for m in row][:5] == [i for i, _ in expected][:5]


def test_changing_the_setting_converts_in_place_and_back(tmp_path: Path) -> None:
    directory, vectors = tmp_path / "g", unit(300, DIM, seed=4)
    ids = fill(directory, vectors, IndexConfig())
    size32 = (directory / SQLITE_NAME).stat().st_size
    with FaissGallery.open(directory, DIM, MODEL, config=F16) as gallery:
        assert blob_lengths(directory) == {DIM * 2}
        assert np.abs(gallery.vectors(ids) - vectors).max() < 1e-3
        hit = gallery.search(vectors[7:8], 1)[0][0]
        assert hit.item.id == ids[7] and abs(hit.score - 1.0) < 1e-3
    assert (directory / SQLITE_NAME).stat().st_size / size32 < 0.6  # compacted, not just rewritten
    assert Manifest.read(directory).index["vector_dtype"] == "float16"
    with FaissGallery.open(directory, DIM, MODEL, config=IndexConfig()) as gallery:
        assert blob_lengths(directory) == {DIM * 4}
        assert np.abs(gallery.vectors(ids) - vectors).max() < 1e-3  # float16's rounding stays, nothing else
        assert gallery.counts()[Modality.INFRARED] == len(ids)
    assert Manifest.read(directory).index["vector_dtype"] == "float32"


CONVERT_CHILD = r"""
import os, sys
from index import metadata
from index.config import IndexConfig
from index.gallery import FaissGallery

metadata.CONVERT_CHUNK = 50
commits = {"n": 0}
real_init = metadata.MetadataStore.__init__

def init(self, *args, **kwargs):  # dies right after the second conversion transaction commits
    real_init(self, *args, **kwargs)

    def trace(sql):
        if sql == "COMMIT":
            commits["n"] += 1
            if commits["n"] == 3:
                os._exit(17)

    self._writer.set_trace_callback(trace)

metadata.MetadataStore.__init__ = init
FaissGallery.open(sys.argv[1], int(sys.argv[2]), sys.argv[3], config=IndexConfig(vector_dtype="float16"))
sys.exit(3)  # the crash point was never reached
"""


def test_killed_during_conversion_reopens_readable_and_finishes(tmp_path: Path) -> None:
    directory, vectors = tmp_path / "g", unit(300, DIM, seed=5)
    ids = fill(directory, vectors, IndexConfig())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CONVERT_CHILD, str(directory), str(DIM), MODEL]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert blob_lengths(directory) == {DIM * 2, DIM * 4}  # part-way: both precisions in the table
    assert Manifest.read(directory).index["vector_dtype"] == "float32"
    with sqlite3.connect(directory / SQLITE_NAME) as conn:  # every row reads back as its vector either way
        rows = dict(conn.execute("SELECT id, embedding FROM vectors").fetchall())
    assert np.abs(np.stack([decode(rows[i], DIM) for i in ids]) - vectors).max() < 1e-3
    with FaissGallery.open(directory, DIM, MODEL, config=F16) as gallery:
        assert blob_lengths(directory) == {DIM * 2}
        queries = unit(4, DIM, seed=6)
        got = [[m.item.id for m in row][:3] for row in gallery.search(queries, 10)]
        assert got == [[i for i, _ in row][:3] for row in brute_force(queries, vectors, np.array(ids), 10)]
    assert Manifest.read(directory).index["vector_dtype"] == "float16"

"""Crash safety: a process killed (``os._exit``) at each step of an add, delete or snapshot reopens to a state
that equals the committed one (old before the SQLite commit, new after it), with search equal to brute force."""

from __future__ import annotations

import os
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
from tests.index.conftest import DIM, MODEL, brute_force, unit

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import os, sys
import faiss, numpy as np
from common.modality import Modality
from common import fsio
from index import gallery as gallery_module
from index.base import NewItem
from index.gallery import FaissGallery

directory, op, point = sys.argv[1], sys.argv[2], sys.argv[3]
new = np.load(sys.argv[4])
gallery = FaissGallery.open(directory, new.shape[1], sys.argv[5])
die = lambda *args, **kwargs: os._exit(17)
calls = {"n": 0}

def nth(n, real):
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            die()
        return real(*args, **kwargs)
    return wrapper

def then_die(real):
    def wrapper(*args, **kwargs):
        real(*args, **kwargs)
        die()
    return wrapper

real_write_index = faiss.write_index

def half_written(index, path):
    real_write_index(index, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    die()

if point == "before-commit":
    gallery._store._writer.set_trace_callback(lambda sql: die() if sql == "COMMIT" else None)
elif point == "after-commit":  # SQLite committed, FAISS not yet updated
    gallery_module.vi.add = die
elif point == "after-index-remove":  # FAISS updated, SQLite not yet committed
    gallery_module.vi.remove = then_die(gallery_module.vi.remove)

if op == "add":
    gallery.add([NewItem(embedding=v, modality=Modality.INFRARED, label="new") for v in new])
else:
    gallery.delete(1)

if point == "snapshot-mid-write":
    gallery_module.vi.faiss.write_index = half_written
elif point.startswith("snapshot-replace-"):
    os.replace = nth(int(point.rsplit("-", 1)[1]), os.replace)
elif point.startswith("snapshot-fsync-"):
    fsio.fsync_path = nth(int(point.rsplit("-", 1)[1]), fsio.fsync_path)
if point.startswith("snapshot") or point == "no-close":
    gallery.checkpoint() if point != "no-close" else die()
sys.exit(3)  # the crash point was never reached
"""

OLD, NEW = "old", "new"
CASES = [
    ("add", "before-commit", OLD),
    ("add", "after-commit", NEW),
    ("add", "no-close", NEW),
    ("add", "snapshot-mid-write", NEW),
    ("add", "snapshot-replace-1", NEW),
    ("add", "snapshot-replace-2", NEW),
    ("add", "snapshot-fsync-1", NEW),  # the temp file's fsync
    ("add", "snapshot-fsync-2", NEW),  # the directory fsync after the first replace
    ("delete", "before-commit", OLD),
    ("delete", "after-index-remove", OLD),
    ("delete", "snapshot-replace-1", NEW),
]


@pytest.mark.parametrize(("op", "point", "expected"), CASES, ids=[f"{op}-{point}" for op, point, _ in CASES])
def test_killed_process_reopens_to_committed_state(tmp_path: Path, op: str, point: str, expected: str):
    old = unit(20, seed=1)
    directory = tmp_path / "g"
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        old_ids = gallery.add([NewItem(embedding=v, modality=Modality.INFRARED) for v in old])
    new = unit(5, seed=2)
    np.save(tmp_path / "new.npy", new)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CHILD, str(directory), op, point, str(tmp_path / "new.npy"), MODEL]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr

    vectors, ids = old, np.array(old_ids)
    if expected == NEW and op == "add":
        vectors, ids = np.concatenate([old, new]), np.arange(1, 26)
    elif expected == NEW:
        vectors, ids = old[1:], ids[1:]
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        assert [it.id for it in gallery.list(limit=100)] == ids.tolist()
        assert gallery.counts() == {Modality.VISIBLE: 0, Modality.INFRARED: len(ids)}
        assert gallery._indexes[Modality.INFRARED].ntotal == len(ids)
        queries = unit(4, seed=3)
        got = [[m.item.id for m in row] for row in gallery.search(queries, 10)]
        assert got == [[i for i, _ in row] for row in brute_force(queries, vectors, ids, 10)]
        next_id = 26 if (op, expected) == ("add", NEW) else 21  # ids of a committed add are never reused
        assert gallery.add([NewItem(embedding=new[0], modality=Modality.VISIBLE)]) == [next_id]
    assert not list(directory.glob("*.tmp"))


def test_failed_snapshot_keeps_previous_files_and_gallery_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    directory = tmp_path / "g"
    gallery = FaissGallery.open(directory, DIM, MODEL)
    gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in unit(10, seed=4)])
    gallery.checkpoint()
    before = (directory / "faiss_vis.index").read_bytes()
    gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in unit(3, seed=5)])

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        gallery.checkpoint()
    monkeypatch.undo()
    assert (directory / "faiss_vis.index").read_bytes() == before
    assert not list(directory.glob("*.tmp"))
    assert len(gallery.search(unit(1, seed=6), 20)[0]) == 13
    gallery.close()
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        assert gallery.counts()[Modality.VISIBLE] == 13


IVF8 = IndexConfig(kind="ivf", nlist=8, nprobe=8, train_min=200)
CONFIG_CHANGES = {"ivf-to-exact": IndexConfig(), "nlist-8-to-4": IVF8.model_copy(update={"nlist": 4, "nprobe": 4})}

CONFIG_CHILD = r"""
import os, sys
from index.config import IndexConfig
from index.gallery import FaissGallery

calls = {"n": 0}
real_replace = os.replace

def replace(*args, **kwargs):  # dies at the n-th file replacement: snapshots and manifest, in whatever order
    calls["n"] += 1
    if calls["n"] == int(sys.argv[3]):
        os._exit(17)
    return real_replace(*args, **kwargs)

os.replace = replace
FaissGallery.open(sys.argv[1], int(sys.argv[2]), sys.argv[4], config=IndexConfig.model_validate_json(sys.argv[5]))
sys.exit(3)  # the crash point was never reached
"""


def _ivf_gallery(directory: Path) -> tuple[np.ndarray, list[int]]:
    vectors = unit(300, seed=7)
    with FaissGallery.open(directory, DIM, MODEL, config=IVF8) as gallery:
        ids = gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in vectors])
        gallery.wait_idle()  # IVF training runs in the background
        assert gallery._indexes[Modality.VISIBLE].nlist == 8
    return vectors, ids


def _assert_serves(gallery: FaissGallery, config: IndexConfig, vectors: np.ndarray, ids: list[int]) -> None:
    index = gallery._indexes[Modality.VISIBLE]
    assert vi.is_ivf(index) == (config.kind == "ivf")
    if config.kind == "ivf":
        assert index.nlist == config.nlist
    else:
        queries = unit(4, seed=8)
        got = [[m.item.id for m in row] for row in gallery.search(queries, 10)]
        assert got == [[i for i, _ in row] for row in brute_force(queries, vectors, np.array(ids), 10)]
    assert index.ntotal == len(ids)


@pytest.mark.parametrize("replacement", [1, 2, 3], ids=lambda n: f"killed-at-replace-{n}")
@pytest.mark.parametrize("change", list(CONFIG_CHANGES), ids=str)
def test_killed_during_config_change_reopens_with_the_configured_index(tmp_path: Path, change: str, replacement: int):
    directory = tmp_path / "g"
    vectors, ids = _ivf_gallery(directory)
    target = CONFIG_CHANGES[change]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CONFIG_CHILD, str(directory), str(DIM), str(replacement), MODEL]
    proc = subprocess.run([*args, target.model_dump_json()], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 17, proc.stderr
    for config in (target, IVF8, target):  # the new config, a roll-back to the old one, the new one again
        with FaissGallery.open(directory, DIM, MODEL, config=config) as gallery:
            _assert_serves(gallery, config, vectors, ids)


def test_snapshot_of_another_index_type_than_configured_is_rebuilt(tmp_path: Path):
    # What a crash between the manifest and the snapshots left before the fix: the manifest names the new config,
    # the snapshots are still the old IVF index.
    directory = tmp_path / "g"
    vectors, ids = _ivf_gallery(directory)
    manifest = Manifest.read(directory)
    for config in (IndexConfig(), IVF8.model_copy(update={"nlist": 4, "nprobe": 4})):
        Manifest(**{**manifest.__dict__, "index": config.model_dump()}).write(directory)
        with FaissGallery.open(directory, DIM, MODEL, config=config) as gallery:
            _assert_serves(gallery, config, vectors, ids)
        with FaissGallery.open(directory, DIM, MODEL, config=IVF8) as gallery:  # and back
            _assert_serves(gallery, IVF8, vectors, ids)


def test_add_succeeds_when_its_snapshot_fails_and_the_snapshot_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    directory = tmp_path / "g"
    gallery = FaissGallery.open(directory, DIM, MODEL, config=IndexConfig(checkpoint_every=5))
    vectors = unit(7, seed=9)

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    ids = gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in vectors[:5]])  # due: snapshot fails
    assert ids == [1, 2, 3, 4, 5]  # committed, so acknowledged: a retrying client would store them twice
    gallery.wait_idle()
    assert "No space left on device" in caplog.text
    assert not (directory / "faiss_vis.index").exists() and not list(directory.glob("*.tmp"))
    assert [row[0].item.id for row in gallery.search(vectors[:5], 1)] == ids
    assert gallery.add([NewItem(embedding=vectors[5], modality=Modality.VISIBLE)]) == [6]  # fails again, retried
    gallery.wait_idle()
    monkeypatch.undo()
    assert gallery.add([NewItem(embedding=vectors[6], modality=Modality.VISIBLE)]) == [7]  # the disk has room now
    gallery.wait_idle()
    assert vi.read(directory / "faiss_vis.index").ntotal == 7
    gallery.close()
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        assert [it.id for it in gallery.list()] == [1, 2, 3, 4, 5, 6, 7]


def test_add_succeeds_when_ivf_training_fails_and_training_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    directory = tmp_path / "g"
    gallery = FaissGallery.open(directory, DIM, MODEL, config=IVF8)
    vectors = unit(260, seed=10)
    real_kmeans = vi.faiss.IndexIVFScalarQuantizer

    def out_of_memory(*args: object) -> None:
        raise MemoryError("simulated: k-means could not allocate")

    monkeypatch.setattr(vi.faiss, "IndexIVFScalarQuantizer", out_of_memory)
    ids = gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in vectors[:250]])  # crosses train_min
    gallery.wait_idle()
    assert ids == list(range(1, 251)) and "k-means could not allocate" in caplog.text
    assert not vi.is_ivf(gallery._indexes[Modality.VISIBLE])
    assert [row[0].item.id for row in gallery.search(vectors[:250:50], 1)] == ids[::50]
    monkeypatch.setattr(vi.faiss, "IndexIVFScalarQuantizer", real_kmeans)
    gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in vectors[250:]])
    gallery.wait_idle()
    assert vi.is_ivf(gallery._indexes[Modality.VISIBLE]) and gallery._indexes[Modality.VISIBLE].ntotal == 260
    gallery.close()

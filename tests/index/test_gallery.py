"""FaissGallery (exact index): search equals brute-force numpy, CRUD round trips across restarts, validation."""

from __future__ import annotations

import numpy as np
import pytest

from common.modality import Modality
from index.base import NewItem, SearchFilter
from index.config import IndexConfig
from index.errors import GalleryError, InvalidEmbeddingError, ItemNotFoundError
from tests.index.conftest import DIM, OpenGallery, brute_force, items_for, unit


def _reference(items: list[NewItem], ids: list[int], where: SearchFilter) -> tuple[np.ndarray, np.ndarray]:
    keep = [
        k
        for k, it in enumerate(items)
        if (where.modality is None or it.modality == where.modality)
        and (where.label is None or it.label == where.label)
        and (where.camera is None or it.camera == where.camera)
    ]
    return np.stack([items[k].embedding for k in keep]), np.array([ids[k] for k in keep])


def _as_pairs(matches: list) -> list[tuple[int, float]]:
    return [(m.item.id, m.score) for m in matches]


def _assert_same(got: list[list[tuple[int, float]]], expected: list[list[tuple[int, float]]]) -> None:
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    for g_row, e_row in zip(got, expected, strict=True):
        np.testing.assert_allclose([s for _, s in g_row], [s for _, s in e_row], atol=1e-5)


FILTERS = [
    SearchFilter(),
    SearchFilter(modality=Modality.INFRARED),
    SearchFilter(modality=Modality.VISIBLE, label="p2"),
    SearchFilter(camera="c1"),
    SearchFilter(modality=Modality.INFRARED, label="p0", camera="c2"),
    SearchFilter(modality=Modality.VISIBLE, min_score=0.3),
    SearchFilter(label="p4", min_score=0.1),
]


@pytest.mark.parametrize("exact_limit", [0, 10_000], ids=["faiss-selector", "stored-vectors"])
@pytest.mark.parametrize("where", FILTERS, ids=repr)
def test_search_after_reopen_equals_brute_force(open_gallery: OpenGallery, where: SearchFilter, exact_limit: int):
    items = items_for(unit(300, seed=1))
    gallery = open_gallery(IndexConfig(filter_exact_limit=exact_limit))
    ids = gallery.add(items)
    gallery.close()
    gallery = open_gallery(IndexConfig(filter_exact_limit=exact_limit))
    queries = unit(7, seed=2)
    vectors, ref_ids = _reference(items, ids, where)
    got = [_as_pairs(row) for row in gallery.search(queries, 10, where)]
    _assert_same(got, brute_force(queries, vectors, ref_ids, 10, where.min_score))
    assert all(len(row) == 10 for row in got) or where.min_score is not None


def test_search_returns_all_matches_when_fewer_than_top_k(open_gallery: OpenGallery):
    items = items_for(unit(40, seed=3))
    gallery = open_gallery(IndexConfig(filter_exact_limit=0))
    ids = gallery.add(items)
    where = SearchFilter(modality=Modality.VISIBLE, label="p1")
    vectors, ref_ids = _reference(items, ids, where)
    got = gallery.search(unit(2, seed=4), 50, where)
    assert [len(row) for row in got] == [len(ref_ids)] * 2
    assert {m.item.label for row in got for m in row} == {"p1"}


def test_add_get_list_counts_delete_round_trip(open_gallery: OpenGallery):
    items = items_for(unit(25, seed=5))
    gallery = open_gallery()
    ids = gallery.add(items)
    assert ids == list(range(1, 26))
    item = gallery.get(7)
    assert (item.label, item.camera, item.source, item.extra) == (items[6].label, items[6].camera, "img6.jpg", {"i": 6})
    assert item.modality == items[6].modality and item.sha256 == f"{6:064x}"
    gallery.delete(7)
    gallery.delete(25)
    gallery.close()

    gallery = open_gallery()
    with pytest.raises(ItemNotFoundError):
        gallery.get(7)
    with pytest.raises(ItemNotFoundError):
        gallery.delete(7)
    alive = [i for i in ids if i not in (7, 25)]
    expected_counts = {
        m: sum(1 for i, it in zip(ids, items, strict=True) if i in alive and it.modality == m) for m in Modality
    }
    assert gallery.counts() == expected_counts
    assert [it.id for it in gallery.list(offset=0, limit=10)] == alive[:10]
    assert [it.id for it in gallery.list(offset=20, limit=10)] == alive[20:]
    vis = [i for i, it in zip(ids, items, strict=True) if i in alive and it.modality == Modality.VISIBLE]
    assert [it.id for it in gallery.list(offset=1, limit=3, modality=Modality.VISIBLE)] == vis[1:4]
    assert gallery.add(items_for(unit(1, seed=6))) == [26]  # ids are never reused, even the deleted maximum
    found = gallery.search(np.stack([items[6].embedding]), 3)
    assert 7 not in [m.item.id for m in found[0]]


def test_self_search_finds_each_item_with_score_one(open_gallery: OpenGallery):
    vectors = unit(50, seed=7)
    gallery = open_gallery()
    ids = gallery.add([NewItem(embedding=v, modality=Modality.INFRARED) for v in vectors])
    top = gallery.search(vectors, 1, SearchFilter(modality=Modality.INFRARED))
    assert [row[0].item.id for row in top] == ids
    np.testing.assert_allclose([row[0].score for row in top], 1.0, atol=1e-5)
    assert gallery.search(vectors[:2], 1, SearchFilter(modality=Modality.VISIBLE)) == [[], []]


@pytest.mark.parametrize(
    "bad",
    [
        np.full(DIM, np.nan, dtype=np.float32),
        np.r_[np.inf, np.zeros(DIM - 1)].astype(np.float32),
        unit(1)[0] * 2.0,
        np.zeros(DIM, dtype=np.float32),
        unit(1, dim=DIM + 1)[0],
    ],
    ids=["nan", "inf", "norm-2", "zero", "wrong-dim"],
)
def test_invalid_embedding_rejected_and_nothing_added(open_gallery: OpenGallery, bad: np.ndarray):
    gallery = open_gallery()
    gallery.add(items_for(unit(3, seed=8)))
    batch = [*items_for(unit(4, seed=9)), NewItem(embedding=bad, modality=Modality.VISIBLE)]
    with pytest.raises(InvalidEmbeddingError):
        gallery.add(batch)
    assert sum(gallery.counts().values()) == 3
    assert [it.id for it in gallery.list()] == [1, 2, 3]
    with pytest.raises(InvalidEmbeddingError):
        gallery.search(np.stack([bad]) if bad.shape == (DIM,) else bad[None, :], 5)


def test_failed_index_add_leaves_nothing(open_gallery: OpenGallery, monkeypatch: pytest.MonkeyPatch):
    gallery = open_gallery()
    gallery.add(items_for(unit(3, seed=10)))

    def fail(*args: object) -> None:
        raise MemoryError("simulated allocation failure")

    monkeypatch.setattr("index.gallery.vi.add", fail)
    with pytest.raises(MemoryError):
        gallery.add(items_for(unit(4, seed=11)))
    monkeypatch.undo()
    assert sum(gallery.counts().values()) == 3
    assert sum(gallery._indexes[m].ntotal for m in Modality) == 3
    gallery.close()
    gallery = open_gallery()
    assert [it.id for it in gallery.list()] == [1, 2, 3]


def test_closed_gallery_refuses_calls(open_gallery: OpenGallery):
    gallery = open_gallery()
    gallery.close()
    gallery.close()
    with pytest.raises(GalleryError, match="closed"):
        gallery.search(unit(1), 1)
    with pytest.raises(GalleryError, match="closed"):
        gallery.add(items_for(unit(1)))


def test_bad_parameters_raise_value_error(open_gallery: OpenGallery):
    gallery = open_gallery()
    with pytest.raises(ValueError, match="top_k"):
        gallery.search(unit(1), 0)
    with pytest.raises(ValueError, match="offset"):
        gallery.list(offset=-1)


def test_directory_holds_index_files_sqlite_and_manifest(open_gallery: OpenGallery, tmp_path):
    gallery = open_gallery()
    gallery.add(items_for(unit(5)))
    gallery.close()
    names = sorted(p.name for p in (tmp_path / "g").iterdir() if not p.name.startswith("metadata.sqlite-"))
    assert names == ["faiss_ir.index", "faiss_vis.index", "manifest.json", "metadata.sqlite"]
    assert sum(open_gallery().counts().values()) == 5


def test_vectors_and_thumbnails_round_trip_and_go_with_the_item(open_gallery: OpenGallery):
    vectors = unit(4, seed=11)
    items = [
        NewItem(embedding=v, modality=Modality.INFRARED, thumbnail=(b"\xff\xd8jpeg%d" % i if i % 2 == 0 else None))
        for i, v in enumerate(vectors)
    ]
    gallery = open_gallery()
    ids = gallery.add(items)
    gallery.close()

    gallery = open_gallery()
    np.testing.assert_array_equal(gallery.vectors([ids[2], ids[0]]), vectors[[2, 0]])
    assert gallery.vectors([]).shape == (0, DIM)
    with pytest.raises(ItemNotFoundError):
        gallery.vectors([ids[0], 999])
    assert gallery.thumbnail(ids[0]) == b"\xff\xd8jpeg0"
    assert gallery.thumbnail(ids[1]) is None
    gallery.delete(ids[0])
    with pytest.raises(ItemNotFoundError):
        gallery.thumbnail(ids[0])
    with pytest.raises(ItemNotFoundError):
        gallery.thumbnail(999)
    store = gallery._store
    with store._reader() as conn:  # the thumbnail row went with the item, not only out of sight
        assert conn.execute("SELECT COUNT(*) FROM thumbnails").fetchone() == (1,)

"""One contract for every gallery backend (FAISS, Milvus Lite, a real Milvus server): the service may use any."""

from __future__ import annotations

import numpy as np
import pytest

from common.modality import Modality
from index.base import NewItem, SearchFilter
from index.errors import IndexMismatchError, InvalidEmbeddingError, ItemNotFoundError
from tests.index.backends import Backend
from tests.index.conftest import DIM, brute_force, items_for, unit
from tests.index.test_gallery import FILTERS as FAISS_FILTERS

FILTERS = [
    *FAISS_FILTERS,
    SearchFilter(label='q"uo\\te é'),
    SearchFilter(label=""),
]


def _odd_items() -> list[NewItem]:
    """Labels a filter must match exactly: quotes, a backslash, non-ASCII, empty (not absent), absent."""
    vectors = unit(4, seed=9)
    labels = ['q"uo\\te é', "", None, "p1"]
    return [NewItem(embedding=v, modality=Modality.VISIBLE, label=lab) for v, lab in zip(vectors, labels, strict=True)]


def _matches(it: NewItem, where: SearchFilter) -> bool:
    return (
        (where.modality is None or it.modality == where.modality)
        and (where.label is None or it.label == where.label)
        and (where.camera is None or it.camera == where.camera)
    )


def test_search_equals_inner_products_under_every_filter(backend: Backend):
    items = items_for(unit(120, seed=1)) + _odd_items()
    gallery = backend.open()
    ids = gallery.add(items)
    queries = unit(5, seed=2)
    for where in FILTERS:
        keep = [k for k, it in enumerate(items) if _matches(it, where)]
        assert keep, where
        expected = brute_force(
            queries, np.stack([items[k].embedding for k in keep]), np.array([ids[k] for k in keep]), 10, where.min_score
        )
        got = gallery.search(queries, 10, where)
        assert [[m.item.id for m in row] for row in got] == [[i for i, _ in row] for row in expected], where
        for g_row, e_row in zip(got, expected, strict=True):
            np.testing.assert_allclose([m.score for m in g_row], [s for _, s in e_row], atol=1e-4)
            assert all(_matches(items[ids.index(m.item.id)], where) for m in g_row)


def test_add_get_round_trips_every_field(backend: Backend):
    vectors = unit(3, seed=3)
    items = [
        NewItem(
            embedding=vectors[0],
            modality=Modality.INFRARED,
            label="0042",
            camera="cam 1",
            captured_at="2026-01-02T03:04:05+00:00",
            source="a.jpg",
            sha256="ab" * 32,
            extra={"site": "gate-3", "nested": {"list": [1, 2.5, None, "x"]}, "ok": True},
            thumbnail=b"\xff\xd8 a tiny jpeg \x00\xff\xd9",
        ),
        NewItem(embedding=vectors[1], modality=Modality.VISIBLE, label="", thumbnail=b""),
        NewItem(embedding=vectors[2], modality=Modality.VISIBLE),
    ]
    gallery = backend.open()
    ids = gallery.add(items)
    assert len(set(ids)) == 3 and all(i > 0 for i in ids)
    first, second, third = (gallery.get(i) for i in ids)
    assert (first.modality, first.label, first.camera, first.source, first.sha256) == (
        Modality.INFRARED,
        "0042",
        "cam 1",
        "a.jpg",
        "ab" * 32,
    )
    assert first.captured_at == "2026-01-02T03:04:05+00:00" and first.extra == items[0].extra
    assert first.added_at.endswith("+00:00") and first.added_at[:4] == "20" + first.added_at[2:4]
    assert (second.label, second.camera, third.label, third.extra) == ("", None, None, {})
    assert [gallery.thumbnail(i) for i in ids] == [items[0].thumbnail, b"", None]
    np.testing.assert_allclose(gallery.vectors([ids[2], ids[0]]), vectors[[2, 0]], atol=1e-6)
    with pytest.raises(ItemNotFoundError):
        gallery.vectors([ids[0], max(ids) + 1])


def test_add_is_all_or_nothing(backend: Backend):
    gallery = backend.open()
    good = items_for(unit(3, seed=4))
    bad = NewItem(embedding=np.full(DIM, np.nan, dtype=np.float32), modality=Modality.VISIBLE)
    with pytest.raises(InvalidEmbeddingError):
        gallery.add([*good, bad])
    short = NewItem(embedding=unit(1, dim=DIM - 1)[0], modality=Modality.VISIBLE)
    with pytest.raises(InvalidEmbeddingError):
        gallery.add([*good, short])
    assert gallery.counts() == {Modality.VISIBLE: 0, Modality.INFRARED: 0}
    assert gallery.list() == []
    assert gallery.add([]) == []


def test_list_pages_in_id_order_with_counts_per_modality(backend: Backend):
    items = items_for(unit(37, seed=5))
    gallery = backend.open()
    ids = gallery.add(items[:20])
    ids += gallery.add(items[20:])
    pages = [gallery.list(offset, 10) for offset in range(0, 40, 10)]
    assert [it.id for page in pages for it in page] == sorted(ids)
    assert [len(p) for p in pages] == [10, 10, 10, 7]
    for modality in Modality:
        mine = sorted(i for i, it in zip(ids, items, strict=True) if it.modality == modality)
        assert [it.id for it in gallery.list(0, 100, modality)] == mine
        assert [it.id for it in gallery.list(2, 3, modality)] == mine[2:5]
        assert gallery.counts()[modality] == len(mine)
    assert gallery.list(100, 10) == []
    with pytest.raises(ValueError, match="offset"):
        gallery.list(-1, 10)


def test_delete_removes_everywhere_and_second_delete_is_not_found(backend: Backend):
    items = items_for(unit(10, seed=6))
    gallery = backend.open()
    ids = gallery.add(items)
    victim = ids[3]
    before = gallery.counts()
    gallery.delete(victim)
    with pytest.raises(ItemNotFoundError):
        gallery.delete(victim)
    for call in (gallery.get, gallery.thumbnail):
        with pytest.raises(ItemNotFoundError):
            call(victim)
    assert gallery.counts()[items[3].modality] == before[items[3].modality] - 1
    assert victim not in [m.item.id for m in gallery.search(items[3].embedding[None], 10)[0]]
    assert victim not in [it.id for it in gallery.list(0, 100)]


def test_top_k_bounds_and_min_score(backend: Backend):
    items = items_for(unit(12, seed=7))
    gallery = backend.open()
    gallery.add(items)
    query = items[0].embedding[None]
    with pytest.raises(ValueError, match="top_k"):
        gallery.search(query, 0)
    assert len(gallery.search(query, 1)[0]) == 1
    assert len(gallery.search(query, 1000)[0]) == 12  # fewer items than top_k: all of them
    best = gallery.search(query, 3, SearchFilter(min_score=0.999))[0]
    assert [m.score > 0.999 for m in best] == [True]
    assert gallery.search(unit(0), 5) == []
    with pytest.raises(InvalidEmbeddingError):
        gallery.search(unit(1, dim=DIM + 1), 5)


def test_reopen_serves_everything_and_refuses_another_model(backend: Backend):
    items = items_for(unit(15, seed=8))
    gallery = backend.open()
    ids = gallery.add(items)
    gallery.close()
    with pytest.raises(IndexMismatchError, match="model|dim"):
        backend.open(model_version="another0model")
    with pytest.raises(IndexMismatchError, match="dim"):
        backend.open(dim=DIM * 2)
    gallery = backend.open()
    assert [it.id for it in gallery.list(0, 100)] == sorted(ids)
    assert gallery.search(items[4].embedding[None], 1)[0][0].item.id == ids[4]
    new = gallery.add(items_for(unit(2, seed=10)))
    assert not set(new) & set(ids)

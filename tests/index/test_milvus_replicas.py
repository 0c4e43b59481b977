"""Two galleries on one Milvus collection (two replicas): unique ids, and each sees the other's writes at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from index.errors import ItemNotFoundError
from index.milvus.gallery import MilvusGallery
from tests.index.backends import milvus_config
from tests.index.conftest import DIM, MODEL, items_for, unit


@pytest.mark.slow
def test_replicas_allocate_unique_ids_and_read_each_others_writes(milvus_server: object) -> None:
    config = milvus_config(milvus_server.uri)  # type: ignore[attr-defined]
    a, b = (MilvusGallery.open(config, DIM, MODEL) for _ in range(2))
    try:
        batches = [items_for(unit(5, seed=s)) for s in range(8)]
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda k: (a, b)[k % 2].add(batches[k]), range(len(batches))))
        flat = [i for batch in ids for i in batch]
        assert len(set(flat)) == len(flat) == 40
        assert [it.id for it in b.list(0, 100)] == sorted(flat) == [it.id for it in a.list(0, 100)]
        victim = ids[0][0]
        b.delete(victim)
        with pytest.raises(ItemNotFoundError):
            a.get(victim)
        assert sum(a.counts().values()) == sum(b.counts().values()) == 39
        hit = a.search(batches[3][2].embedding[None], 1)[0][0]
        assert hit.item.id == ids[3][2] and hit.score > 0.9999
    finally:
        a.close()
        b.close()

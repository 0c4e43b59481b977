"""``vireid gallery migrate``: an embedded gallery copied into Milvus keeps ids, metadata, thumbnails and vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from index.factory import open_gallery
from index.gallery import FaissGallery
from index.milvus.config import MilvusConfig
from tests.index.backends import milvus_config
from tests.index.conftest import DIM, MODEL, items_for, unit


def _source(directory: Path) -> list[int]:
    items = items_for(unit(45, seed=1))
    items[0] = items[0].__class__(**{**items[0].__dict__, "thumbnail": b"\xff\xd8jpeg\xff\xd9", "label": None})
    with FaissGallery.open(directory, DIM, MODEL, "cafe") as gallery:
        ids = gallery.add(items)
        gallery.delete(ids[5])  # a gap in the ids: they are kept, not renumbered
    return [i for i in ids if i != ids[5]]


@pytest.mark.parametrize("target", ["lite", pytest.param("server", marks=pytest.mark.slow)])
def test_migrate_copies_everything_and_a_rerun_duplicates_nothing(
    tmp_path: Path, target: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
):
    ids = _source(tmp_path / "g")
    uri = str(tmp_path / "m.db") if target == "lite" else request.getfixturevalue("milvus_server").uri
    config = milvus_config(uri)
    argv = ["gallery", "migrate", "--from-data-dir", str(tmp_path / "g"), "--to-index", config.model_dump_json()]
    assert main([*argv, "--batch", "10"]) == 0
    assert main(argv) == 0  # re-run: rewrites, no duplicates
    out = capsys.readouterr().out
    assert "copied 44 items" in out and "20/20 sampled items found themselves, top-10 overlap 1.000" in out
    source = FaissGallery.open(tmp_path / "g", DIM, MODEL)
    copy = open_gallery(config, tmp_path, DIM, MODEL)
    try:
        assert copy.counts() == source.counts()
        assert [it for it in copy.list(0, 100)] == source.list(0, 100)  # ids, metadata, added_at
        assert [copy.thumbnail(i) for i in ids[:2]] == [b"\xff\xd8jpeg\xff\xd9", None]
        np.testing.assert_allclose(copy.vectors(ids), source.vectors(ids), atol=1e-7)
        new = copy.add(items_for(unit(2, seed=3)))  # the target's new ids never land on a migrated one
        assert not set(new) & set(ids) and sum(copy.counts().values()) == len(ids) + 2
    finally:
        copy.close()
        source.close()


def test_migrate_refuses_a_target_holding_other_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _source(tmp_path / "g")
    config = MilvusConfig.model_validate({"kind": "milvus", "uri": str(tmp_path / "m.db")})
    other = open_gallery(config, tmp_path, DIM, MODEL)
    other.add(items_for(unit(3, seed=2)))
    other.close()
    argv = [
        "gallery",
        "migrate",
        "--from-data-dir",
        str(tmp_path / "g"),
        "--to-index",
        json.dumps({"kind": "milvus", "uri": config.uri}),
    ]
    assert main(argv) == 2
    assert "counts differ" in capsys.readouterr().out

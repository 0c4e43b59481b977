"""manifest.json: a gallery of another dimension, model version or format is refused with a clear message."""

from __future__ import annotations

import json

import pytest

from index.config import IndexConfig
from index.errors import GalleryCorruptError, IndexMismatchError
from index.gallery import FaissGallery
from index.manifest import FORMAT_VERSION, Manifest
from tests.index.conftest import DIM, MODEL, OpenGallery, items_for, unit


def test_manifest_records_what_the_gallery_holds(open_gallery: OpenGallery, tmp_path):
    open_gallery(IndexConfig(kind="ivf", nlist=8, nprobe=2)).close()
    raw = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert raw["format"] == FORMAT_VERSION
    assert (raw["embedding_dim"], raw["model_version"], raw["git_sha"]) == (DIM, MODEL, "deadbeef")
    assert (raw["index"]["kind"], raw["index"]["nlist"], raw["index"]["quantizer"]) == ("ivf", 8, "sq8")


def test_other_embedding_dim_is_refused(open_gallery: OpenGallery, tmp_path):
    open_gallery().add(items_for(unit(3)))
    with pytest.raises(IndexMismatchError, match=r"dimension 16.*dimension 32.*new \(empty\) gallery directory"):
        FaissGallery.open(tmp_path / "g", 32, MODEL)


def test_other_model_version_is_refused(open_gallery: OpenGallery, tmp_path):
    open_gallery().close()
    with pytest.raises(IndexMismatchError, match=r"'abc123def456'.*'ffff00001111'.*re-embed"):
        FaissGallery.open(tmp_path / "g", DIM, "ffff00001111")


def test_other_format_is_refused(open_gallery: OpenGallery, tmp_path):
    open_gallery().close()
    path = tmp_path / "g" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": FORMAT_VERSION + 1}))
    with pytest.raises(IndexMismatchError, match="format"):
        FaissGallery.open(tmp_path / "g", DIM, MODEL)


def test_unreadable_manifest_is_corrupt(open_gallery: OpenGallery, tmp_path):
    open_gallery().close()
    (tmp_path / "g" / "manifest.json").write_text("{not json")
    with pytest.raises(GalleryCorruptError, match="manifest"):
        Manifest.read(tmp_path / "g")


def test_directory_with_files_but_no_manifest_is_refused(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(GalleryCorruptError, match="no manifest.json"):
        FaissGallery.open(tmp_path / "g", DIM, MODEL)
    assert not (tmp_path / "g" / "manifest.json").exists()


def test_folder_that_is_not_a_gallery_is_left_untouched(tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"chapter 1")
    (folder / "thesis.docx.tmp").write_bytes(b"autosave of chapter 2")  # a user's file that merely ends in .tmp
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(GalleryCorruptError, match="no manifest.json"):
        FaissGallery.open(folder, DIM, MODEL)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_new_gallery_interrupted_before_its_manifest_is_created_again(tmp_path):
    directory = tmp_path / "g"
    directory.mkdir()
    (directory / "manifest.json.tmp").write_text("{half a manifest")  # the creating process died mid-write
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        assert gallery.add(items_for(unit(2))) == [1, 2]
    assert not (directory / "manifest.json.tmp").exists()
    assert Manifest.read(directory).model_version == MODEL

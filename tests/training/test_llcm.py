"""LLCM on a fake tree: the release's query/gallery lists exactly, training lists, evaluation splits, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from tests.training.agw_reference import ref_process_gallery_llcm, ref_process_query_llcm
from tests.training.conftest import FakeLLCM
from training.data.base import DatasetLayoutError
from training.data.layout import ProtocolLists, protocol_lists
from training.data.llcm import LLCM, camera_of, gallery_samples, query_samples

# The reference parses the camera from the first "cam" in the whole path: test names here avoid that word.
REF_MODE = {Modality.VISIBLE: 1, Modality.INFRARED: 2}


def process_query_llcm(root: str | Path, modality: Modality) -> ProtocolLists:
    """Our queries in the release's ``(paths, pids, camids)`` form."""
    return protocol_lists(query_samples(root, modality))


def process_gallery_llcm(root: str | Path, modality: Modality, trial: int) -> ProtocolLists:
    """Our single-shot gallery in the release's ``(paths, pids, camids)`` form."""
    return protocol_lists(gallery_samples(root, modality, trial))


def _assert_same_lists(ours, ref) -> None:  # type: ignore[no-untyped-def]
    assert ours[0] == ref[0]
    np.testing.assert_array_equal(ours[1], ref[1])
    np.testing.assert_array_equal(ours[2], ref[2])


@pytest.mark.parametrize("modality", list(Modality))
def test_builders_equal_release_code(llcm_tree: FakeLLCM, modality: Modality) -> None:
    root = str(llcm_tree.root)
    _assert_same_lists(process_query_llcm(root, modality), ref_process_query_llcm(root, REF_MODE[modality]))
    for trial in range(10):
        ours = process_gallery_llcm(root, modality, trial)
        _assert_same_lists(ours, ref_process_gallery_llcm(root, REF_MODE[modality], trial))


def test_query_lists_every_test_image_of_the_modality(llcm_tree: FakeLLCM) -> None:
    paths, pids, camids = process_query_llcm(llcm_tree.root, Modality.INFRARED)
    files = llcm_tree.test_files
    expected = [
        (str(p), pid, cam)
        for pid in (11, 12, 13)
        for cam in range(1, 10)
        for p in files.get(("test_nir", cam, pid), [])
    ]
    assert list(zip(paths, pids.tolist(), camids.tolist(), strict=True)) == expected


def test_training_lists_and_eval_splits(llcm_tree: FakeLLCM) -> None:
    data = LLCM(llcm_tree.root, num_trials=3)
    assert data.num_train_pids == 3
    assert [(s.path, s.pid, s.camid) for s in data.train_visible] == [
        (llcm_tree.root / rel, label, camera_of(rel)) for rel, label in llcm_tree.train["train_vis"]
    ]
    assert [s.camid for s in data.train_infrared[:4]] == [1, 1, 4, 4]
    splits = data.eval_splits()
    names = [f"llcm/{d}/trial{t}" for d in ("ir2vis", "vis2ir") for t in range(3)]
    assert [s.name for s in splits] == names
    root = str(llcm_tree.root)
    ir2vis_1 = splits[1]
    query = ref_process_query_llcm(root, 2)
    gallery = ref_process_gallery_llcm(root, 1, trial=1)
    assert [(str(s.path), s.pid, s.camid) for s in ir2vis_1.query] == list(zip(*query, strict=True))
    assert [(str(s.path), s.pid, s.camid) for s in ir2vis_1.gallery] == list(zip(*gallery, strict=True))
    vis2ir_2 = splits[5]
    assert {s.modality for s in vis2ir_2.query} == {Modality.VISIBLE}
    assert [str(s.path) for s in vis2ir_2.gallery] == ref_process_gallery_llcm(root, 2, trial=2)[0]


def test_camera_of_reads_the_cam_folder() -> None:
    assert camera_of("train_vis/cam7/0003/x.jpg") == 7
    assert camera_of("train_vis/0003/x.jpg") == 0


def test_missing_layout_names_the_path(llcm_tree: FakeLLCM, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="root not found"):
        LLCM(tmp_path / "nowhere")
    (llcm_tree.root / "idx" / "train_nir.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="train_nir.txt"):
        LLCM(llcm_tree.root)
    (llcm_tree.root / "test_nir").rename(llcm_tree.root / "nir")
    with pytest.raises(DatasetLayoutError, match="test_nir"):
        process_query_llcm(llcm_tree.root, Modality.INFRARED)

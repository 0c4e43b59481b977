"""SYSU-MM01 on a fake tree: AGW's query/gallery lists exactly, training relabelling, evaluation splits, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from tests.training.agw_reference import ref_process_gallery_sysu, ref_process_query_sysu
from tests.training.conftest import FakeSYSU
from training.data.base import DatasetLayoutError
from training.data.sysu import (
    SYSUMM01,
    calibration_ids,
    identity_samples,
    process_gallery_sysu,
    process_query_sysu,
)


def _assert_same_lists(ours, ref) -> None:  # type: ignore[no-untyped-def]
    assert ours[0] == ref[0]
    np.testing.assert_array_equal(ours[1], ref[1])
    np.testing.assert_array_equal(ours[2], ref[2])


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trailing_slash", [False, True])
def test_builders_equal_public_protocol_code(sysu_tree: FakeSYSU, mode: str, trailing_slash: bool) -> None:
    data_path = str(sysu_tree.root) + ("/" if trailing_slash else "")
    _assert_same_lists(process_query_sysu(data_path, mode), ref_process_query_sysu(data_path, mode))
    for trial in range(10):
        ours = process_gallery_sysu(data_path, mode, trial)
        _assert_same_lists(ours, ref_process_gallery_sysu(data_path, mode, trial))


def test_query_is_every_infrared_test_image(sysu_tree: FakeSYSU) -> None:
    paths, pids, camids = process_query_sysu(sysu_tree.root)
    expected = [p for pid in sorted(sysu_tree.test_ids) for cam in (3, 6) for p in sysu_tree.files.get((cam, pid), [])]
    assert paths == [str(p) for p in expected]
    assert list(pids) == [int(Path(p).parent.name) for p in paths]
    assert list(camids) == [int(Path(p).parent.parent.name[3:]) for p in paths]
    assert len(paths) == 6 * 6 - 3 - 2  # 6 test ids x 2 cams x 3 images, minus id 8's cam6 and 2 of id 10's cam3


def test_gallery_is_single_shot_per_id_and_camera(sysu_tree: FakeSYSU) -> None:
    paths, pids, camids = process_gallery_sysu(sysu_tree.root, "all", trial=3)
    folders = [
        (cam, pid) for pid in sorted(sysu_tree.test_ids) for cam in (1, 2, 4, 5) if (cam, pid) in sysu_tree.files
    ]
    assert list(zip(camids.tolist(), pids.tolist(), strict=True)) == folders
    assert all(Path(p) in sysu_tree.files[f] for p, f in zip(paths, folders, strict=True))
    indoor = process_gallery_sysu(sysu_tree.root, "indoor", trial=3)
    assert set(indoor[2].tolist()) == {1, 2}
    draws = {tuple(process_gallery_sysu(sysu_tree.root, "all", t)[0]) for t in range(10)}
    assert len(draws) > 1  # trials differ


def test_training_set_relabels_train_and_val_ids(sysu_tree: FakeSYSU, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        data = SYSUMM01(sysu_tree.root)
    assert "lack one modality" in caplog.text  # id 3 has no infrared images
    assert data.num_train_pids == 3  # ids 1, 2, 4 -> labels 0, 1, 2
    label = {1: 0, 2: 1, 4: 2}
    expected_vis = [
        (p, label[pid], cam) for pid in (1, 2, 4) for cam in (1, 2, 4, 5) for p in sysu_tree.files[(cam, pid)]
    ]
    assert [(s.path, s.pid, s.camid) for s in data.train_visible] == expected_vis
    assert {s.modality for s in data.train_visible} == {Modality.VISIBLE}
    assert [(s.pid, s.camid) for s in data.train_infrared] == [
        (label[p], c) for p in (1, 2, 4) for c in (3, 6) for _ in range(3)
    ]
    assert {s.modality for s in data.train_infrared} == {Modality.INFRARED}


def test_eval_splits_cover_both_modes_and_ten_trials(sysu_tree: FakeSYSU) -> None:
    splits = SYSUMM01(sysu_tree.root).eval_splits()
    assert [s.name for s in splits] == [f"sysu/{m}/trial{t}" for m in ("all", "indoor") for t in range(10)]
    query = ref_process_query_sysu(str(sysu_tree.root))
    for split in splits:
        _, mode, trial = split.name.split("/")
        gallery = ref_process_gallery_sysu(str(sysu_tree.root), mode, int(trial[5:]))
        assert [(str(s.path), s.pid, s.camid) for s in split.query] == list(zip(*query, strict=True))
        assert [(str(s.path), s.pid, s.camid) for s in split.gallery] == list(zip(*gallery, strict=True))
        assert {s.modality for s in split.query} == {Modality.INFRARED}
        assert {s.modality for s in split.gallery} == {Modality.VISIBLE}


def test_missing_layout_names_the_path(sysu_tree: FakeSYSU, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="root not found"):
        SYSUMM01(tmp_path / "nowhere")
    (sysu_tree.root / "exp" / "val_id.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="val_id.txt"):
        SYSUMM01(sysu_tree.root)
    (sysu_tree.root / "exp" / "test_id.txt").write_text("not,ids\n")
    with pytest.raises(DatasetLayoutError, match="comma-separated integer ids"):
        process_query_sysu(sysu_tree.root)
    (sysu_tree.root / "cam6").rename(sysu_tree.root / "cam6_moved")
    with pytest.raises(DatasetLayoutError, match="cam6"):
        process_query_sysu(sysu_tree.root)
    with pytest.raises(ValueError, match="unknown SYSU-MM01 mode"):
        process_gallery_sysu(sysu_tree.root, "outdoor")


def test_hold_out_val_keeps_the_val_ids_for_calibration(sysu_tree: FakeSYSU) -> None:
    data = SYSUMM01(sysu_tree.root, hold_out_val=True)
    assert data.num_train_pids == 2  # ids 1, 2 (3 lacks infrared); val id 4 held out
    assert {s.path.parent.name for s in data.train_visible} == {"0001", "0002"}
    assert calibration_ids(sysu_tree.root, hold_out_val=True) == [4]
    visible, infrared = identity_samples(sysu_tree.root, [4])
    assert [s.path for s in visible] == [p for cam in (1, 2, 4, 5) for p in sysu_tree.files[(cam, 4)]]
    assert [s.path for s in infrared] == [p for cam in (3, 6) for p in sysu_tree.files[(cam, 4)]]
    assert {s.pid for s in visible + infrared} == {4}  # original pids, not relabelled


def test_calibration_ids_come_from_a_held_out_list_that_overlaps_nothing(sysu_tree: FakeSYSU) -> None:
    with pytest.raises(DatasetLayoutError, match=r"calib_id.txt not found.*data.hold_out_val=true"):
        calibration_ids(sysu_tree.root)  # SYSU-MM01 trains on train + val and lists no calibration ids
    calib = sysu_tree.root / "exp" / "calib_id.txt"
    calib.write_text("11,12\n")
    assert calibration_ids(sysu_tree.root) == [11, 12]
    for overlapping, subset in (("12,4", "val"), ("2", "train"), ("11,9", "test")):
        calib.write_text(overlapping + "\n")
        with pytest.raises(DatasetLayoutError, match=f"overlap the {subset} ids"):
            calibration_ids(sysu_tree.root)
    with pytest.raises(DatasetLayoutError, match="overlap the test ids"):
        (sysu_tree.root / "exp" / "val_id.txt").write_text("5\n")
        calibration_ids(sysu_tree.root, hold_out_val=True)

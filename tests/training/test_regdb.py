"""RegDB on a fake tree: the trial's lists, relabelled training ids, both search directions, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from tests.training.agw_reference import ref_process_test_regdb
from tests.training.conftest import FakeRegDB
from training.data.base import DatasetLayoutError
from training.data.regdb import RegDB


@pytest.mark.parametrize("trial", [1, 2])
def test_training_lists_are_relabelled_and_shared(regdb_tree: FakeRegDB, trial: int) -> None:
    data = RegDB(regdb_tree.root, trial)
    train_ids = sorted({label for _, label in regdb_tree.lists[("train", "visible", trial)]})
    relabel = {pid: i for i, pid in enumerate(train_ids)}
    for samples, word, modality, cam in (
        (data.train_visible, "visible", Modality.VISIBLE, 1),
        (data.train_infrared, "thermal", Modality.INFRARED, 2),
    ):
        written = regdb_tree.lists[("train", word, trial)]
        assert [(s.path, s.pid, s.camid, s.modality) for s in samples] == [
            (regdb_tree.root / rel, relabel[label], cam, modality) for rel, label in written
        ]
    assert data.num_train_pids == 4


def test_eval_splits_match_public_test_lists(regdb_tree: FakeRegDB) -> None:
    splits = RegDB(regdb_tree.root, trial=2).eval_splits()
    assert [s.name for s in splits] == ["regdb/vis2ir/trial2", "regdb/ir2vis/trial2"]
    vis_paths, vis_labels = ref_process_test_regdb(str(regdb_tree.root) + "/", trial=2, modal="visible")
    ir_paths, ir_labels = ref_process_test_regdb(str(regdb_tree.root) + "/", trial=2, modal="thermal")
    vis2ir, ir2vis = splits
    assert [str(s.path) for s in vis2ir.query] == [os.path.normpath(p) for p in vis_paths]
    assert [str(s.path) for s in vis2ir.gallery] == [os.path.normpath(p) for p in ir_paths]
    np.testing.assert_array_equal([s.pid for s in vis2ir.query], vis_labels)
    np.testing.assert_array_equal([s.pid for s in vis2ir.gallery], ir_labels)
    assert ir2vis.query == vis2ir.gallery and ir2vis.gallery == vis2ir.query
    assert {s.modality for s in ir2vis.query} == {Modality.INFRARED}
    assert {s.pid for s in vis2ir.query} == {0, 1, 2, 3}  # original labels of trial 2's test ids


def test_errors_name_the_problem(regdb_tree: FakeRegDB, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1..10"):
        RegDB(regdb_tree.root, trial=0)
    with pytest.raises(DatasetLayoutError, match="root not found"):
        RegDB(tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match="train_visible_3.txt"):
        RegDB(regdb_tree.root, trial=3)
    (regdb_tree.root / "Thermal" / "5" / "t_5_1.bmp").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 images listed in .*test_thermal_1.txt.*t_5_1.bmp"):
        RegDB(regdb_tree.root, trial=1)
    (regdb_tree.root / "idx" / "train_visible_2.txt").write_text("Visible/4/v_4_0.bmp four\n")
    with pytest.raises(DatasetLayoutError, match=r"train_visible_2.txt:1: expected"):
        RegDB(regdb_tree.root, trial=2)

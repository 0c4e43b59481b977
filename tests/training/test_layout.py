"""The shared layout module: id files, identity folders, single-shot draws, index lists, relabelling, no torch."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.modality import Modality
from training.data.base import DatasetLayoutError, Sample
from training.data.layout import (
    draw_single_shot,
    every_image,
    list_identity_folders,
    listed_samples,
    protocol_lists,
    read_id_file,
    relabel,
    write_id_file,
)


def test_id_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "test_id.txt"
    write_id_file(path, [9, 5, 10])
    assert path.read_text() == "9,5,10\n"
    assert read_id_file(path) == [9, 5, 10]
    with pytest.raises(DatasetLayoutError, match="identity list not found"):
        read_id_file(tmp_path / "absent.txt")
    path.write_text("")
    with pytest.raises(DatasetLayoutError, match="comma-separated integer ids"):
        read_id_file(path)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_identity_folders_sorted_ids_then_given_cameras(tmp_path: Path) -> None:
    for rel in ("cam2/0007/b.jpg", "cam2/0007/a.jpg", "cam1/0007/c.jpg", "cam1/0003/d.jpg", "cam1/0004/x.jpg"):
        _touch(tmp_path / rel)
    (tmp_path / "cam2" / "0003").mkdir()  # an empty folder is listed, with no images
    folders = list_identity_folders(tmp_path, [("cam2", 2), ("cam1", 1)], [7, 3], Modality.VISIBLE)
    assert [[(str(s.path.relative_to(tmp_path)), s.pid, s.camid) for s in f] for f in folders] == [
        [],
        [("cam1/0003/d.jpg", 3, 1)],
        [("cam2/0007/a.jpg", 7, 2), ("cam2/0007/b.jpg", 7, 2)],
        [("cam1/0007/c.jpg", 7, 1)],
    ]
    assert {s.modality for s in every_image(folders)} == {Modality.VISIBLE}
    assert len(every_image(folders)) == 4


def test_single_shot_draws_are_the_seeded_random_choices(tmp_path: Path) -> None:
    folders = [tuple(Sample(Path(f"{f}/{k}.jpg"), f, 1, Modality.INFRARED) for k in range(f + 1)) for f in range(6)]
    for trial in range(5):
        random.seed(trial)
        expected = [random.choice(folder) for folder in folders]
        assert list(draw_single_shot(folders, trial)) == expected
    assert draw_single_shot([(), *folders[:1]], 0) == folders[0]  # empty folders draw nothing


def test_listed_samples_read_labels_cameras_and_check_the_images(tmp_path: Path) -> None:
    _touch(tmp_path / "Visible" / "1" / "a.bmp")
    _touch(tmp_path / "Visible" / "2" / "b.bmp")
    index = tmp_path / "idx.txt"
    index.write_text("Visible/1/a.bmp 4\n\nVisible/2/b.bmp 9\n")
    samples = listed_samples(tmp_path, index, Modality.VISIBLE, lambda rel: len(rel))
    assert samples == (
        Sample(tmp_path / "Visible/1/a.bmp", 4, 15, Modality.VISIBLE),
        Sample(tmp_path / "Visible/2/b.bmp", 9, 15, Modality.VISIBLE),
    )
    index.write_text("Visible/1/a.bmp 4\nVisible/3/c.bmp 5\n")
    with pytest.raises(DatasetLayoutError, match=r"1 images listed in .*idx.txt.*c\.bmp"):
        listed_samples(tmp_path, index, Modality.VISIBLE, lambda rel: 0)


def test_relabel_keeps_ids_of_both_modalities(caplog: pytest.LogCaptureFixture) -> None:
    def samples(pids: list[int], modality: Modality) -> list[Sample]:
        return [Sample(Path(f"{modality.value}/{i}.jpg"), p, 1, modality) for i, p in enumerate(pids)]

    with caplog.at_level(logging.WARNING):
        vis, ir = relabel(samples([30, 10, 20], Modality.VISIBLE), samples([10, 30, 30], Modality.INFRARED), "x")
    assert "1 training ids lack one modality" in caplog.text
    assert [(str(s.path), s.pid) for s in vis] == [("vis/0.jpg", 1), ("vis/1.jpg", 0)]
    assert [s.pid for s in ir] == [0, 1, 1] and {s.modality for s in ir} == {Modality.INFRARED}


def test_protocol_lists_are_the_columns() -> None:
    samples = [
        Sample(Path("/d/cam3/0005/0001.jpg"), 5, 3, Modality.INFRARED),
        Sample(Path("b"), 6, 6, Modality.INFRARED),
    ]
    paths, pids, camids = protocol_lists(samples)
    assert paths == ["/d/cam3/0005/0001.jpg", "b"]
    np.testing.assert_array_equal(pids, [5, 6])
    np.testing.assert_array_equal(camids, [3, 6])


def test_data_modules_import_no_torch() -> None:
    """A torch-free client imports the readers and the layout module: none of them may pull torch in."""
    modules = ["training", "training.data", "training.data.layout", "training.data.sysu"]
    modules += ["training.data.regdb", "training.data.llcm", "training.data.base", "training.data.datasets"]
    script = f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
    script += "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision'})))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []

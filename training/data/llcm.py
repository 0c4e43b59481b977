"""LLCM: training lists, and the query/gallery builders of the LLCM release's evaluation protocol.

``query_samples`` / ``gallery_samples`` are the protocol's queries and galleries: as
``training.data.layout.protocol_lists`` they are the lists of ``process_query_llcm`` / ``process_gallery_llcm`` of
``DEEN/data_manager.py`` in github.com/ZYK100/LLCM (its ``mode=1`` is ``Modality.VISIBLE``, ``mode=2``
``Modality.INFRARED``): same order, same path strings (for a root without ``.`` parts or doubled slashes), same
``random.seed(trial)`` single-shot draws.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from common.modality import Modality
from training.data.base import DatasetLayoutError, EvalSplit, Sample, VIReIDDataset
from training.data.layout import (
    draw_single_shot,
    every_image,
    list_identity_folders,
    listed_samples,
    read_id_file,
    relabel,
    require_dirs,
)
from training.data.sysu import NUM_TRIALS

logger = logging.getLogger(__name__)

TEST_DIRS: dict[Modality, str] = {Modality.VISIBLE: "test_vis", Modality.INFRARED: "test_nir"}
TEST_CAMS: dict[Modality, tuple[int, ...]] = {
    Modality.VISIBLE: (1, 2, 3, 4, 5, 6, 7, 8, 9),
    Modality.INFRARED: (1, 2, 4, 5, 6, 7, 8, 9),  # no near-infrared images from camera 3
}
_CAM = re.compile(r"cam(\d+)$")


def _test_folders(data_path: str | Path, modality: Modality) -> list[tuple[Sample, ...]]:
    """The ``test_<vis|nir>/cam<c>/<pid:04d>`` folders of the test ids, in the release's order."""
    root = Path(data_path)
    require_dirs(root, [TEST_DIRS[modality], "idx"], "LLCM")
    ids = read_id_file(root / "idx" / "test_id.txt")
    cam_dirs = [(f"{TEST_DIRS[modality]}/cam{cam}", cam) for cam in TEST_CAMS[modality]]
    return list_identity_folders(root, cam_dirs, ids, modality)


def query_samples(data_path: str | Path, modality: Modality) -> tuple[Sample, ...]:
    """All test images of one modality."""
    return every_image(_test_folders(data_path, modality))


def gallery_samples(data_path: str | Path, modality: Modality, trial: int = 0) -> tuple[Sample, ...]:
    """Single-shot gallery of one trial: one random test image per id and camera of ``modality``."""
    return draw_single_shot(_test_folders(data_path, modality), trial)


def camera_of(relpath: str) -> int:
    """Camera number from the ``cam<N>`` folder of a relative path; 0 if the path names none."""
    for part in reversed(Path(relpath).parts[:-1]):
        match = _CAM.match(part)
        if match:
            return int(match.group(1))
    return 0


class LLCM(VIReIDDataset):
    """LLCM (Zhang and Wang, "Diverse Embedding Expansion Network and Low-Light Cross-Modality Benchmark for
    Visible-Infrared Person Re-identification", CVPR 2023).

    URL: https://github.com/ZYK100/LLCM (by agreement with the authors).
    Statistics: 1,064 ids, 46,767 images from 9 cameras; 713 training ids, 351 test ids.
    Layout: <root>/idx/train_vis.txt, <root>/idx/train_nir.txt (lines ``<relative path> <label>``),
        <root>/idx/test_id.txt (one line of comma-separated ids), test images in
        <root>/test_vis/cam{1..9}/<pid:04d>/ and <root>/test_nir/cam{1,2,4..9}/<pid:04d>/.
    Evaluation (``eval_llcm``, ``num_trials`` single-shot galleries): ``llcm/ir2vis`` queries with all
    near-infrared test images against a visible gallery, exactly as the release; ``llcm/vis2ir`` queries with all
    visible test images against a near-infrared gallery. (The release's VIS->IR mode swaps the distance matrix
    before ``eval_llcm``, so its queries are the sampled near-infrared images; we keep the stated direction.)
    ``camid`` is the camera number (0 for training paths without a ``cam<N>`` folder).
    """

    name = "llcm"

    def __init__(self, root: str | Path, num_trials: int = NUM_TRIALS) -> None:
        self.root = Path(root)
        self.num_trials = num_trials
        require_dirs(self.root, ["idx", *TEST_DIRS.values()], "LLCM")
        read_id_file(self.root / "idx" / "test_id.txt")
        train = {
            modality: listed_samples(self.root, self.root / "idx" / file_name, modality, camera_of)
            for modality, file_name in ((Modality.VISIBLE, "train_vis.txt"), (Modality.INFRARED, "train_nir.txt"))
        }
        self.train_visible, self.train_infrared = relabel(train[Modality.VISIBLE], train[Modality.INFRARED], self.name)
        logger.info("LLCM: %d training ids", self.num_train_pids)

    def eval_splits(self) -> list[EvalSplit]:
        """``llcm/{ir2vis,vis2ir}/trial{t}``: all test images of one modality against the other's sampled gallery."""
        splits = []
        for query_modality, direction in ((Modality.INFRARED, "ir2vis"), (Modality.VISIBLE, "vis2ir")):
            query = query_samples(self.root, query_modality)
            if not query:
                raise DatasetLayoutError(f"LLCM: no {TEST_DIRS[query_modality]} images of the test ids in {self.root}")
            folders = _test_folders(self.root, query_modality.other)
            for trial in range(self.num_trials):
                splits.append(EvalSplit("llcm", direction, trial, query, draw_single_shot(folders, trial)))
        return splits

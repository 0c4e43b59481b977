"""SYSU-MM01: training samples, and the AGW query/gallery builders of the evaluation protocol.

``query_samples`` and ``gallery_samples`` are the protocol's queries and galleries; ``process_query_sysu`` and
``process_gallery_sysu`` return them as the same lists as the public protocol code (``data_manager.py`` of
github.com/mangye16/Cross-Modal-Re-ID-baseline): same order, same path strings (for a root without ``.`` parts or
doubled slashes, which ``pathlib`` normalises), same single-shot gallery draws (``random.Random(trial)`` makes the
draws of ``random.seed(trial)`` + ``random.choice``). Camera and identity come from the folder names instead of fixed
character positions of the path. The layout constants and path helpers here are also what ``training.synth`` writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from common.modality import Modality
from training.data.base import DatasetLayoutError, EvalSplit, Sample, VIReIDDataset
from training.data.layout import (
    ProtocolLists,
    draw_single_shot,
    every_image,
    identity_dir_name,
    list_identity_folders,
    protocol_lists,
    read_id_file,
    relabel,
    require_dirs,
)

logger = logging.getLogger(__name__)

CAMERAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
VISIBLE_CAMS: tuple[int, ...] = (1, 2, 4, 5)
INFRARED_CAMS: tuple[int, ...] = (3, 6)
GALLERY_CAMS: dict[str, tuple[int, ...]] = {"all": VISIBLE_CAMS, "indoor": (1, 2)}
NUM_TRIALS = 10
ID_FILES_DIR = "exp"

Subset = Literal["train", "val", "test", "calib"]


def cam_dir_name(cam: int) -> str:
    """Folder of camera ``cam`` under the root: ``cam3``."""
    return f"cam{cam}"


def identity_folder(root: Path, cam: int, pid: int) -> Path:
    """``<root>/cam<cam>/<pid:04d>``: the images of one identity seen by one camera."""
    return root / cam_dir_name(cam) / identity_dir_name(pid)


def id_file(root: Path, subset: Subset) -> Path:
    """``<root>/exp/<subset>_id.txt``: one line of comma-separated ids."""
    return root / ID_FILES_DIR / f"{subset}_id.txt"


def _camera_dirs(cams: Sequence[int]) -> list[tuple[str, int]]:
    return [(cam_dir_name(cam), cam) for cam in cams]


def _check_mode(mode: str) -> None:
    if mode not in GALLERY_CAMS:
        raise ValueError(f"unknown SYSU-MM01 mode {mode!r}; expected 'all' or 'indoor'")


def _test_folders(data_path: str | Path, cams: Sequence[int], modality: Modality) -> list[tuple[Sample, ...]]:
    """The ``cam<c>/<pid:04d>`` folders of the test ids, in the protocol's order."""
    root = Path(data_path)
    require_dirs(root, [cam_dir_name(c) for c in cams], "SYSU-MM01")
    ids = read_id_file(id_file(root, "test"))
    return list_identity_folders(root, _camera_dirs(cams), ids, modality)


def query_samples(data_path: str | Path) -> tuple[Sample, ...]:
    """All infrared images (cams 3, 6) of the test ids: the queries of both modes."""
    return every_image(_test_folders(data_path, INFRARED_CAMS, Modality.INFRARED))


def gallery_samples(data_path: str | Path, mode: str = "all", trial: int = 0) -> tuple[Sample, ...]:
    """Single-shot visible gallery of one trial: per test id and camera (all: 1,2,4,5; indoor: 1,2) one image."""
    _check_mode(mode)
    return draw_single_shot(_test_folders(data_path, GALLERY_CAMS[mode], Modality.VISIBLE), trial)


def process_query_sysu(data_path: str | Path, mode: str = "all") -> ProtocolLists:
    """:func:`query_samples` as AGW's ``(paths, pids, camids)``, for either mode."""
    _check_mode(mode)
    return protocol_lists(query_samples(data_path))


def process_gallery_sysu(data_path: str | Path, mode: str = "all", trial: int = 0) -> ProtocolLists:
    """:func:`gallery_samples` as AGW's ``(paths, pids, camids)``."""
    return protocol_lists(gallery_samples(data_path, mode, trial))


class SYSUMM01(VIReIDDataset):
    """SYSU-MM01 (Wu et al., "RGB-Infrared Cross-Modality Person Re-Identification", ICCV 2017).

    URL: https://github.com/wuancong/SYSU-MM01 (by request to the authors).
    Statistics: 491 ids; train+val 395 ids (22,258 visible, 11,909 infrared images); test 96 ids, 3,803 IR queries;
        single-shot galleries of 301 (all-search) and 112 (indoor) visible images per trial.
    Layout: <root>/cam{1..6}/<pid:04d>/<nnnn>.jpg (visible cams 1,2,4,5; infrared 3,6);
        <root>/exp/{train,val,test}_id.txt, one line of comma-separated ids.
    Training uses train + val ids (train only with ``hold_out_val``, which keeps val for score calibration:
    :func:`calibration_ids`); ``camid`` is the camera number. Evaluation: all infrared test images query a
    visible single-shot gallery, modes ``all`` and ``indoor`` x ``num_trials`` random galleries (AGW protocol).
    """

    name = "sysu_mm01"

    def __init__(self, root: str | Path, num_trials: int = NUM_TRIALS, hold_out_val: bool = False) -> None:
        self.root = Path(root)
        self.num_trials = num_trials
        require_dirs(self.root, [cam_dir_name(c) for c in CAMERAS] + [ID_FILES_DIR], "SYSU-MM01")
        train_ids = read_id_file(id_file(self.root, "train"))
        if not hold_out_val:
            train_ids += read_id_file(id_file(self.root, "val"))
        read_id_file(id_file(self.root, "test"))  # fail now, not at the first evaluation

        def samples(cams: Sequence[int], modality: Modality) -> tuple[Sample, ...]:
            return every_image(list_identity_folders(self.root, _camera_dirs(cams), set(train_ids), modality))

        self.train_visible, self.train_infrared = relabel(
            samples(VISIBLE_CAMS, Modality.VISIBLE), samples(INFRARED_CAMS, Modality.INFRARED), self.name
        )
        if not self.train_visible:
            raise DatasetLayoutError(f"SYSU-MM01: no training images under {self.root}/cam*/<pid:04d>/")
        logger.info(
            "SYSU-MM01: %d training ids, %d visible and %d infrared images",
            self.num_train_pids,
            len(self.train_visible),
            len(self.train_infrared),
        )

    def eval_splits(self) -> list[EvalSplit]:
        """``sysu/{all,indoor}/trial{t}``: all IR test images against each trial's single-shot visible gallery."""
        query = query_samples(self.root)
        if not query:
            raise DatasetLayoutError(f"SYSU-MM01: no infrared images of the test ids under {self.root}/cam{{3,6}}/")
        splits = []
        for mode, cams in GALLERY_CAMS.items():
            folders = _test_folders(self.root, cams, Modality.VISIBLE)
            for trial in range(self.num_trials):
                splits.append(EvalSplit("sysu", mode, trial, query, draw_single_shot(folders, trial)))
        return splits


def calibration_ids(data_path: str | Path, hold_out_val: bool = False) -> list[int]:
    """Identities to fit the score calibration on: the val ids when held out of training, else ``exp/calib_id.txt``.

    Raises:
        DatasetLayoutError: no such list (SYSU-MM01 itself has none: train with ``data.hold_out_val=true``), or its
            ids overlap the identities trained or tested on.
    """
    root = Path(data_path)
    if hold_out_val:
        ids = read_id_file(id_file(root, "val"))
        used = {"train": read_id_file(id_file(root, "train")), "test": read_id_file(id_file(root, "test"))}
    else:
        path = id_file(root, "calib")
        if not path.is_file():
            raise DatasetLayoutError(
                f"no calibration identities: {path} not found. SYSU-MM01 trains on train + val ids; train with "
                "data.hold_out_val=true to keep the val ids for calibration, or list held-out ids in that file"
            )
        ids = read_id_file(path)
        used = {s: read_id_file(id_file(root, s)) for s in ("train", "val", "test")}
    for subset, subset_ids in used.items():
        overlap = sorted(set(ids) & set(subset_ids))
        if overlap:
            raise DatasetLayoutError(f"calibration ids overlap the {subset} ids {overlap[:10]}: pick held-out ids")
    return sorted(ids)


def identity_samples(data_path: str | Path, ids: Sequence[int]) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Every visible and every infrared image of ``ids`` (original pids), identity by identity."""
    root = Path(data_path)
    require_dirs(root, [cam_dir_name(c) for c in CAMERAS], "SYSU-MM01")
    visible = every_image(list_identity_folders(root, _camera_dirs(VISIBLE_CAMS), ids, Modality.VISIBLE))
    infrared = every_image(list_identity_folders(root, _camera_dirs(INFRARED_CAMS), ids, Modality.INFRARED))
    return visible, infrared

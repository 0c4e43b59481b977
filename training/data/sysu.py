"""SYSU-MM01: training samples, and the AGW query/gallery builders of the evaluation protocol.

``process_query_sysu`` and ``process_gallery_sysu`` return the same lists as the public protocol code
(``data_manager.py`` of github.com/mangye16/Cross-Modal-Re-ID-baseline): same order, same path strings, same
single-shot gallery draws (``random.Random(trial)`` makes the draws of ``random.seed(trial)`` + ``random.choice``).
Camera and identity come from the folder names instead of fixed character positions of the path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from common.modality import Modality
from training.data.base import DatasetLayoutError, EvalSplit, VIReIDDataset
from training.data.layout import (
    Listing,
    Lists,
    draw_gallery,
    list_identity_folders,
    lists_of,
    read_id_file,
    relabel,
    require_dirs,
    to_samples,
)

logger = logging.getLogger(__name__)

VISIBLE_CAMS: tuple[int, ...] = (1, 2, 4, 5)
INFRARED_CAMS: tuple[int, ...] = (3, 6)
GALLERY_CAMS: dict[str, tuple[int, ...]] = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
NUM_TRIALS = 10


def _cam_dirs(cams: Sequence[int]) -> list[tuple[str, int]]:
    return [(f"cam{cam}", cam) for cam in cams]


def _check_mode(mode: str) -> None:
    if mode not in GALLERY_CAMS:
        raise ValueError(f"unknown SYSU-MM01 mode {mode!r}; expected 'all' or 'indoor'")


def _test_listing(data_path: str | Path, cams: Sequence[int]) -> Listing:
    root = Path(data_path)
    require_dirs(root, [f"cam{c}" for c in cams], "SYSU-MM01")
    ids = read_id_file(root / "exp" / "test_id.txt")
    return list_identity_folders(str(data_path), _cam_dirs(cams), ids)


def process_query_sysu(data_path: str | Path, mode: str = "all") -> Lists:
    """All infrared images (cams 3, 6) of the test ids, for either mode: ``(paths, pids, camids)``."""
    _check_mode(mode)
    listing = _test_listing(data_path, INFRARED_CAMS)
    return lists_of([(img_dir + "/" + name, cam, pid) for img_dir, cam, pid, names in listing for name in names])


def process_gallery_sysu(data_path: str | Path, mode: str = "all", trial: int = 0) -> Lists:
    """Single-shot visible gallery of one trial: per test id and camera (all: 1,2,4,5; indoor: 1,2) one image."""
    _check_mode(mode)
    return draw_gallery(_test_listing(data_path, GALLERY_CAMS[mode]), trial)


class SYSUMM01(VIReIDDataset):
    """SYSU-MM01 (Wu et al., "RGB-Infrared Cross-Modality Person Re-Identification", ICCV 2017).

    URL: https://github.com/wuancong/SYSU-MM01 (by request to the authors).
    Statistics: 491 ids; train+val 395 ids (22,258 visible, 11,909 infrared images); test 96 ids, 3,803 IR queries;
        single-shot galleries of 301 (all-search) and 112 (indoor) visible images per trial.
    Layout: <root>/cam{1..6}/<pid:04d>/<nnnn>.jpg (visible cams 1,2,4,5; infrared 3,6);
        <root>/exp/{train,val,test}_id.txt, one line of comma-separated ids.
    Training uses train + val ids; ``camid`` is the camera number. Evaluation: all infrared test images query a
    visible single-shot gallery, modes ``all`` and ``indoor`` x ``num_trials`` random galleries (AGW protocol).
    """

    name = "sysu_mm01"

    def __init__(self, root: str | Path, num_trials: int = NUM_TRIALS) -> None:
        self.root = Path(root)
        self.num_trials = num_trials
        require_dirs(self.root, [f"cam{c}" for c in range(1, 7)] + ["exp"], "SYSU-MM01")
        exp = self.root / "exp"
        train_ids = read_id_file(exp / "train_id.txt") + read_id_file(exp / "val_id.txt")
        read_id_file(exp / "test_id.txt")  # fail now, not at the first evaluation

        def items(cams: Sequence[int]) -> list[tuple[Path, int, int]]:
            listing = list_identity_folders(str(self.root), _cam_dirs(cams), set(train_ids))
            return [(Path(d) / n, pid, cam) for d, cam, pid, names in listing for n in names]

        self.train_visible, self.train_infrared = relabel(items(VISIBLE_CAMS), items(INFRARED_CAMS), self.name)
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
        query = to_samples(process_query_sysu(self.root), Modality.INFRARED)
        if not query:
            raise DatasetLayoutError(f"SYSU-MM01: no infrared images of the test ids under {self.root}/cam{{3,6}}/")
        splits = []
        for mode, cams in GALLERY_CAMS.items():
            listing = _test_listing(self.root, cams)
            for trial in range(self.num_trials):
                gallery = to_samples(draw_gallery(listing, trial), Modality.VISIBLE)
                splits.append(EvalSplit(f"sysu/{mode}/trial{trial}", query, gallery))
        return splits

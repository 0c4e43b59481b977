"""On-disk layout pieces the three data set readers share: id files, identity folders, index lists, relabelling.

SYSU-MM01 and LLCM keep test images in ``<root>/<camera folder>/<pid:04d>/`` and list their test identities in one
line of comma-separated ids; RegDB and LLCM list training images in index files of ``<relative path> <label>`` lines.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from common.modality import Modality
from training.data.base import DatasetLayoutError, Sample

logger = logging.getLogger(__name__)

# (directory as the reference spells it, camera number, pid, sorted file names) per existing <cam>/<pid> folder
Listing = list[tuple[str, int, int, list[str]]]
Lists = tuple[list[str], np.ndarray, np.ndarray]


def read_id_file(path: Path) -> list[int]:
    """Identities listed in the first line of ``path``, comma-separated (``exp/test_id.txt``)."""
    if not path.is_file():
        raise DatasetLayoutError(f"identity list not found: {path} (expected one line of comma-separated ids)")
    lines = path.read_text().splitlines()
    try:
        return [int(token) for token in lines[0].split(",")]
    except (IndexError, ValueError) as err:
        raise DatasetLayoutError(
            f"{path}: expected one line of comma-separated integer ids, got {lines[:1]!r}"
        ) from err


def list_identity_folders(data_path: str, cam_dirs: Sequence[tuple[str, int]], pids: Iterable[int]) -> Listing:
    """Existing ``<data_path>/<cam_dir>/<pid:04d>`` folders, ids in sorted order, cameras in the given order."""
    listing: Listing = []
    for pid in sorted(pids):
        for cam_dir, cam in cam_dirs:
            img_dir = os.path.join(data_path, cam_dir, f"{pid:04d}")
            if os.path.isdir(img_dir):
                listing.append((img_dir, cam, pid, sorted(os.listdir(img_dir))))
    return listing


def require_dirs(root: Path, names: Iterable[str], what: str) -> None:
    """Raise :class:`DatasetLayoutError` naming the first of ``root/<name>`` that is not a directory."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{what} root not found: {root}")
    for name in names:
        if not (root / name).is_dir():
            raise DatasetLayoutError(f"{what}: folder {root / name} not found; is {root} the data set root?")


def lists_of(entries: list[tuple[str, int, int]]) -> Lists:
    paths = [path for path, _, _ in entries]
    return paths, np.array([pid for _, _, pid in entries]), np.array([cam for _, cam, _ in entries])


def draw_gallery(listing: Listing, trial: int) -> Lists:
    """One random image per folder, drawn in folder order from ``random.Random(trial)``."""
    rng = random.Random(trial)
    return lists_of([(img_dir + "/" + rng.choice(names), cam, pid) for img_dir, cam, pid, names in listing if names])


def relabel(
    visible: list[tuple[Path, int, int]], infrared: list[tuple[Path, int, int]], dataset: str
) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Samples with pids relabelled 0..n-1 (sorted raw ids) over the ids seen in both modalities.

    Args:
        visible, infrared: ``(path, raw_pid, camid)`` per image.
        dataset: name for the log message about ids dropped for lacking one modality.
    """
    vis_ids, ir_ids = {p for _, p, _ in visible}, {p for _, p, _ in infrared}
    if vis_ids != ir_ids:
        logger.warning(
            "%s: %d training ids lack one modality and are left out: %s",
            dataset,
            len(vis_ids ^ ir_ids),
            sorted(vis_ids ^ ir_ids)[:10],
        )
    label = {pid: i for i, pid in enumerate(sorted(vis_ids & ir_ids))}

    def samples(items: list[tuple[Path, int, int]], modality: Modality) -> tuple[Sample, ...]:
        return tuple(Sample(path, label[pid], cam, modality) for path, pid, cam in items if pid in label)

    return samples(visible, Modality.VISIBLE), samples(infrared, Modality.INFRARED)


def to_samples(lists: Lists, modality: Modality) -> tuple[Sample, ...]:
    paths, pids, cams = lists
    return tuple(Sample(Path(p), int(pid), int(cam), modality) for p, pid, cam in zip(paths, pids, cams, strict=True))


def read_list(path: Path) -> list[tuple[str, int]]:
    """``(relative path, label)`` per non-empty line ``relpath label`` of an index file."""
    if not path.is_file():
        raise DatasetLayoutError(f"index file not found: {path} (expected lines '<relative image path> <label>')")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetLayoutError(f"{path}:{number}: expected '<relative image path> <label>', got {line!r}")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise DatasetLayoutError(f"index file {path} lists no images")
    return entries


def check_images(root: Path, entries: list[tuple[str, int]], index_file: Path) -> None:
    """Raise :class:`DatasetLayoutError` if any listed image is missing under ``root``."""
    missing = [rel for rel, _ in entries if not (root / rel).is_file()]
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} images listed in {index_file} are missing under {root}, e.g. {root / missing[0]}"
        )

"""On-disk layout pieces the three data set readers share: id files, identity folders, index lists, relabelling.

SYSU-MM01 and LLCM keep test images in ``<root>/<camera folder>/<pid:04d>/`` and list their test identities in one
line of comma-separated ids; RegDB and LLCM list training images in index files of ``<relative path> <label>`` lines.
Every image is a :class:`~training.data.base.Sample`; :func:`protocol_lists` gives the public protocol code's
``(paths, pids, camids)`` columns of a sequence of samples.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.modality import Modality
from training.data.base import DatasetLayoutError, Sample

logger = logging.getLogger(__name__)

ProtocolLists = tuple[list[str], np.ndarray, np.ndarray]
"""``(paths, pids, camids)``: what the public protocol code's ``process_*`` functions return."""


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


def write_id_file(path: Path, ids: Iterable[int]) -> None:
    """Write ``ids`` as the one line of comma-separated ids that :func:`read_id_file` reads."""
    path.write_text(",".join(str(i) for i in ids) + "\n")


def identity_dir_name(pid: int) -> str:
    """Name of an identity's image folder: the pid in four digits (``0042``)."""
    return f"{pid:04d}"


def require_dirs(root: Path, names: Iterable[str], what: str) -> None:
    """Raise :class:`DatasetLayoutError` naming the first of ``root/<name>`` that is not a directory."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{what} root not found: {root}")
    for name in names:
        if not (root / name).is_dir():
            raise DatasetLayoutError(f"{what}: folder {root / name} not found; is {root} the data set root?")


def list_identity_folders(
    root: str | Path, cam_dirs: Sequence[tuple[str, int]], pids: Iterable[int], modality: Modality
) -> list[tuple[Sample, ...]]:
    """The images of each existing ``<root>/<cam_dir>/<pid:04d>`` folder, file names sorted.

    Folders come ids in sorted order, then cameras in the given order (the public protocol code's order).

    Args:
        cam_dirs: ``(folder name under root, camera number)`` per camera, e.g. ``("cam3", 3)``.
    """
    folders: list[tuple[Sample, ...]] = []
    for pid in sorted(pids):
        for cam_dir, cam in cam_dirs:
            folder = Path(root) / cam_dir / identity_dir_name(pid)
            if folder.is_dir():
                folders.append(tuple(Sample(folder / name, pid, cam, modality) for name in sorted(os.listdir(folder))))
    return folders


def every_image(folders: Iterable[tuple[Sample, ...]]) -> tuple[Sample, ...]:
    """All images of the folders, folder after folder."""
    return tuple(sample for folder in folders for sample in folder)


def draw_single_shot(folders: Iterable[tuple[Sample, ...]], trial: int) -> tuple[Sample, ...]:
    """One random image per non-empty folder, drawn in folder order from ``random.Random(trial)``.

    The same draws as the public code's ``random.seed(trial)`` then one ``random.choice`` per folder.
    """
    rng = random.Random(trial)
    return tuple(rng.choice(folder) for folder in folders if folder)


def read_index_file(path: Path) -> list[tuple[str, int]]:
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


def listed_samples(
    root: Path, index_file: Path, modality: Modality, camera_of: Callable[[str], int]
) -> tuple[Sample, ...]:
    """The images an index file lists under ``root``, labels as written, ``camera_of(relative path)`` as camid.

    Raises:
        DatasetLayoutError: the index file is missing or malformed, or a listed image is missing.
    """
    entries = read_index_file(index_file)
    missing = [rel for rel, _ in entries if not (root / rel).is_file()]
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} images listed in {index_file} are missing under {root}, e.g. {root / missing[0]}"
        )
    return tuple(Sample(root / rel, label, camera_of(rel), modality) for rel, label in entries)


def relabel(
    visible: Sequence[Sample], infrared: Sequence[Sample], dataset: str
) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Samples with pids relabelled 0..n-1 (sorted raw ids) over the ids seen in both modalities.

    Args:
        visible, infrared: training samples with their raw pids.
        dataset: name for the log message about ids dropped for lacking one modality.
    """
    vis_ids, ir_ids = {s.pid for s in visible}, {s.pid for s in infrared}
    if vis_ids != ir_ids:
        logger.warning(
            "%s: %d training ids lack one modality and are left out: %s",
            dataset,
            len(vis_ids ^ ir_ids),
            sorted(vis_ids ^ ir_ids)[:10],
        )
    label = {pid: i for i, pid in enumerate(sorted(vis_ids & ir_ids))}

    def relabelled(samples: Sequence[Sample]) -> tuple[Sample, ...]:
        return tuple(replace(s, pid=label[s.pid]) for s in samples if s.pid in label)

    return relabelled(visible), relabelled(infrared)


def protocol_lists(samples: Sequence[Sample]) -> ProtocolLists:
    """The ``(paths, pids, camids)`` columns of ``samples``, as the public protocol code returns them."""
    paths = [str(s.path) for s in samples]
    return paths, np.array([s.pid for s in samples]), np.array([s.camid for s in samples])

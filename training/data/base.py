"""What every VI-ReID data set exposes: training samples per modality and evaluation splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.modality import Modality


class DatasetLayoutError(FileNotFoundError):
    """A data set folder or index file is missing or not in the expected layout."""


@dataclass(frozen=True)
class Sample:
    """One image: its file, identity and camera. ``pid`` is relabelled to 0..n-1 in training sets."""

    path: Path
    pid: int
    camid: int
    modality: Modality


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation setting: query and gallery samples (original pids), named e.g. ``sysu/all/trial3``."""

    name: str
    query: tuple[Sample, ...]
    gallery: tuple[Sample, ...]


class VIReIDDataset:
    """Base class: ``train_visible`` / ``train_infrared`` share one relabelled pid space 0..num_train_pids-1."""

    name: str = ""
    root: Path
    train_visible: tuple[Sample, ...]
    train_infrared: tuple[Sample, ...]

    @property
    def num_train_pids(self) -> int:
        """Number of training identities (the classifier size)."""
        pids = {s.pid for s in self.train_visible} | {s.pid for s in self.train_infrared}
        return len(pids)

    def eval_splits(self) -> list[EvalSplit]:
        """The evaluation settings of this data set's protocol (e.g. SYSU all/indoor x 10 trials)."""
        raise NotImplementedError

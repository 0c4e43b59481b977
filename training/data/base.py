"""What every VI-ReID data set exposes: training samples per modality and evaluation splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

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


EvalProtocol = Literal["sysu", "regdb", "llcm"]
"""The community evaluation protocol a split is scored with (``training.metrics.split_metrics``)."""


@dataclass(frozen=True)
class EvalSplit:
    """One trial of one evaluation setting: query and gallery samples (original pids).

    Attributes:
        protocol: the data set's evaluation protocol.
        setting: ``all``/``indoor`` (SYSU-MM01 gallery cameras) or ``vis2ir``/``ir2vis`` (RegDB, LLCM direction).
        trial: the random gallery (SYSU-MM01, LLCM: 0..num_trials-1) or identity split (RegDB: 1..10).
    """

    protocol: EvalProtocol
    setting: str
    trial: int
    query: tuple[Sample, ...]
    gallery: tuple[Sample, ...]

    def __post_init__(self) -> None:
        if self.protocol not in get_args(EvalProtocol):
            expected = ", ".join(get_args(EvalProtocol))
            raise ValueError(f"no evaluation protocol {self.protocol!r} for split {self.name}; expected {expected}")

    @property
    def group(self) -> str:
        """The setting the trials of which are averaged in reports: ``sysu/all``."""
        return f"{self.protocol}/{self.setting}"

    @property
    def name(self) -> str:
        """``sysu/all/trial3``."""
        return f"{self.group}/trial{self.trial}"


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

"""The data set a config names: the one place that maps ``data.name`` to its reader."""

from __future__ import annotations

from training.config import DataConfig
from training.data.base import VIReIDDataset
from training.data.llcm import LLCM
from training.data.regdb import RegDB
from training.data.sysu import SYSUMM01


def build_dataset(cfg: DataConfig) -> VIReIDDataset:
    """The data set named by ``data.name`` (``DatasetLayoutError`` names a missing folder or file)."""
    if cfg.name == "sysu_mm01":
        return SYSUMM01(cfg.root, num_trials=cfg.num_trials, hold_out_val=cfg.hold_out_val)
    if cfg.name == "regdb":
        return RegDB(cfg.root, trial=cfg.trial)
    return LLCM(cfg.root, num_trials=cfg.num_trials)

"""Checkpoints: atomic save every epoch, exact resume, strict loading for evaluation/export, ImageNet weights.

A run directory holds ``checkpoint.pt`` (the last epoch) and ``checkpoints/epoch_NNN.pt``. A checkpoint is a
dict of tensors and plain values (loadable with ``torch.load(weights_only=True)``): ``model``, ``optimizer``,
``scheduler``, ``sampler``, ``scaler``, ``epoch`` (epochs completed), ``rng`` (python, numpy, torch CPU/CUDA)
and ``config`` (the resolved experiment config). Its ``model_version`` is ``checkpoint_hash(path)``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.fsio import atomic_write, file_sha256
from model.backbone import load_torchvision_resnet
from model.net import VIReIDNet
from training.config import ExperimentConfig, config_from_dict, config_to_dict

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
EPOCH_DIR = "checkpoints"
FORMAT_VERSION = 1


class PretrainedWeightsNotFoundError(FileNotFoundError):
    """The ImageNet weights file named by ``run.pretrained`` does not exist."""


class CheckpointError(ValueError):
    """A checkpoint file is missing or is not a training checkpoint of this code."""


def epoch_checkpoint_path(run_dir: Path, epoch: int) -> Path:
    """``run_dir/checkpoints/epoch_NNN.pt`` for a 1-based count of completed epochs."""
    return run_dir / EPOCH_DIR / f"epoch_{epoch:03d}.pt"


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and every CUDA device), as weights-only-loadable values."""
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    return {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states written by ``rng_state``."""
    random.setstate(state["python"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`common.fsio.atomic_write` (never a torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _atomic_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (a hard link where the file system allows one)."""

    def link_or_copy(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)  # left by an interrupted copy
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)

    atomic_write(dst, link_or_copy)


def save_checkpoint(
    run_dir: Path, state: dict[str, Any], cfg: ExperimentConfig, epoch: int, keep_epoch: bool = True
) -> Path:
    """Write ``run_dir/checkpoint.pt`` (and ``checkpoints/epoch_NNN.pt``) after ``epoch`` completed epochs.

    Args:
        run_dir: the run directory.
        state: ``model``, ``optimizer``, ``scheduler``, ``sampler``, ``scaler`` state dicts (model unwrapped
            from DDP).
        cfg: the experiment config, stored so evaluation and export rebuild the same network.
        epoch: number of completed epochs (where a resume continues).
        keep_epoch: also keep a per-epoch copy.

    Returns:
        The path of ``checkpoint.pt``.
    """
    payload = {
        "format": FORMAT_VERSION,
        **state,
        "epoch": epoch,
        "rng": rng_state(),
        "config": config_to_dict(cfg),
    }
    last = run_dir / CHECKPOINT_NAME
    if keep_epoch:
        per_epoch = epoch_checkpoint_path(run_dir, epoch)
        atomic_torch_save(payload, per_epoch)
        _atomic_copy(per_epoch, last)
    else:
        atomic_torch_save(payload, last)
    logger.info("saved checkpoint after epoch %d to %s", epoch, last)
    return last


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint (weights-only unpickling).

    Raises:
        CheckpointError: the file is missing or is not a training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; a run directory holds {CHECKPOINT_NAME}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint (expected keys 'model' and 'config')")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> ExperimentConfig:
    """The experiment config stored in a checkpoint."""
    return config_from_dict(ckpt["config"])


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[VIReIDNet, ExperimentConfig]:
    """Rebuild the network of a checkpoint and load its weights with ``strict=True``; returned in eval mode."""
    ckpt = load_checkpoint(path, map_location)
    cfg = checkpoint_config(ckpt)
    net = VIReIDNet(cfg.model)
    net.load_state_dict(ckpt["model"], strict=True)
    return net.to(map_location).eval(), cfg


def load_pretrained(net: VIReIDNet, path: str | Path) -> None:
    """Initialise the backbone from a local torchvision ImageNet ResNet ``.pth`` file (no download).

    Raises:
        PretrainedWeightsNotFoundError: ``path`` is not a file (the message says how to provide it).
        model.backbone.PretrainedWeightsMismatchError: the file is not a torchvision ResNet of ``model.arch``.
    """
    path = Path(path)
    arch = net.cfg.arch
    if not path.is_file():
        raise PretrainedWeightsNotFoundError(
            f"ImageNet {arch} weights not found at {path}. Copy torchvision's {arch} .pth file there "
            f"(e.g. resnet50-0676ba61.pth from torchvision's model zoo, obtained on a machine with internet), "
            "set run.pretrained=<path>, or set run.pretrained=null to train from random init."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    load_torchvision_resnet(net, state)
    logger.info("initialised the %s backbone from %s", arch, path)


def checkpoint_hash(path: str | Path) -> str:
    """First 12 hex digits of the file's sha256: the ``model_version`` of artefacts built from it."""
    return file_sha256(Path(path))[:12]

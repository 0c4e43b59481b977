"""Typed experiment configuration: one YAML per experiment in ``configs/``, dotted overrides on the command line.

``load_config("configs/sysu.yaml", ["optim.lr=0.05", "data.root=/data/SYSU-MM01"])`` reads the YAML, applies the
overrides (each value parsed as a YAML scalar, so ``null``, ``true``, ``0.05`` and ``[20, 60]`` work) and validates
the result into frozen pydantic models. A key that does not exist is one error naming the key and the valid keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from common.config import Frozen
from model.config import NetConfig


class ConfigError(ValueError):
    """A config file or override is malformed or names a key that does not exist."""


class DataConfig(Frozen):
    """Which data set to read and how; the input size comes from ``model.input_height/width``."""

    name: Literal["sysu_mm01", "regdb", "llcm"]
    root: Path
    trial: int = Field(default=1, ge=1, le=10, description="RegDB split 1..10 (ignored by SYSU-MM01 and LLCM)")
    num_trials: int = Field(default=10, ge=1, description="random galleries of SYSU-MM01 / LLCM evaluation")
    workers: int = Field(default=4, ge=0)
    eval_batch_size: int = Field(default=64, ge=1)
    hold_out_val: bool = Field(
        default=False,
        description="SYSU-MM01: train on the train ids only, keeping the val ids for score calibration (export)",
    )


class SamplerConfig(Frozen):
    """Identity-balanced cross-modal batches: ``num_ids`` ids x (``num_instances`` visible + infrared) images.

    ``epoch="agw"`` sizes an epoch as the AGW IdentitySampler does (``max(#vis, #ir) // (P*K) + 1`` batches, each of
    P distinct random ids); ``epoch="identities"`` is one pass over the shuffled identities (``#ids // P`` batches,
    each identity exactly once).
    """

    num_ids: int = Field(default=4, ge=2)
    num_instances: int = Field(default=4, ge=1)
    epoch: Literal["agw", "identities"] = "agw"
    with_replacement: bool = Field(
        default=True,
        description="draw each id's images with replacement (the AGW sampler); false: without when it has enough",
    )


class AugmentConfig(Frozen):
    """Training augmentation of docs/method.md §4 (resize is always on)."""

    flip: bool = True
    pad_crop: bool = True
    pad: int = Field(default=10, ge=0)
    erasing_p: float = Field(default=0.5, ge=0.0, le=1.0)
    erasing_area: tuple[float, float] = Field(
        default=(0.02, 0.4), description="erased fraction of the image, drawn uniformly (the public VI-ReID code)"
    )
    erasing_ratio: tuple[float, float] = Field(
        default=(0.3, 1 / 0.3), description="aspect ratio h/w of the erased box, drawn uniformly (not log-uniformly)"
    )
    grayscale_p: float = Field(
        default=0.0, ge=0.0, le=1.0, description="random greyscale (not in the draft; helps colour-free matching)"
    )

    @model_validator(mode="after")
    def _ordered_ranges(self) -> AugmentConfig:
        low, high = self.erasing_area
        if not 0 < low <= high < 1:
            raise ValueError(f"augment.erasing_area must satisfy 0 < low <= high < 1, got {list(self.erasing_area)}")
        if not 0 < self.erasing_ratio[0] <= self.erasing_ratio[1]:
            raise ValueError(f"augment.erasing_ratio must satisfy 0 < low <= high, got {list(self.erasing_ratio)}")
        return self


class OptimConfig(Frozen):
    """SGD; ``lr`` is the base rate of heads and new modules, the pretrained backbone runs at ``backbone_lr_mult``x."""

    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0)
    weight_decay: float = Field(default=5e-4, ge=0)
    nesterov: bool = True
    backbone_lr_mult: float = Field(default=0.1, gt=0)


class ScheduleConfig(Frozen):
    """Per-epoch LR factor: linear warm-up from ``warmup_start`` to 1, then x``gamma`` at each milestone."""

    epochs: int = Field(default=80, ge=1)
    warmup_epochs: int = Field(default=10, ge=0)
    warmup_start: float = Field(default=0.1, gt=0, le=1.0)
    milestones: tuple[int, ...] = (20, 60)
    gamma: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _sorted_milestones(self) -> ScheduleConfig:
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"schedule.milestones must be increasing, got {list(self.milestones)}")
        return self


class LossConfig(Frozen):
    """Weights and parameters of the three losses of docs/method.md §3."""

    id_weight: float = Field(default=1.0, ge=0)
    triplet_weight: float = Field(default=1.0, ge=0)
    dcl_weight: float = Field(default=0.5, ge=0)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    margin: float = Field(default=0.3, ge=0)


class RunConfig(Frozen):
    """Where and how a run executes. The run directory is ``out_dir / experiment``."""

    out_dir: Path = Path("runs")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=True, description="mixed precision (CUDA only; ignored on CPU)")
    eval_every: int = Field(default=10, ge=0, description="evaluate every N epochs and after the last; 0 = never")
    pretrained: Path | None = Field(
        default=None, description="local torchvision ImageNet ResNet .pth; null = random init"
    )
    keep_epoch_checkpoints: bool = True
    max_iters: int | None = Field(default=None, ge=1, description="cap on iterations per epoch (smoke tests)")
    log_every: int = Field(default=20, ge=1)
    eval_wait_minutes: float = Field(
        default=240, gt=0, description="DDP: how long the other ranks wait for rank 0's evaluation and checkpoint"
    )


class ExperimentConfig(Frozen):
    """The whole experiment: network, data, sampler, augmentation, optimiser, schedule, losses and run."""

    experiment: str
    model: NetConfig = Field(default_factory=NetConfig)
    data: DataConfig
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @property
    def run_dir(self) -> Path:
        """Directory holding ``config.yaml``, checkpoints and TensorBoard logs of this run."""
        return self.run.out_dir / self.experiment


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """All dotted leaf keys of a config model, e.g. ``optim.lr``."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_valid_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _check_keys(raw: dict[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    """Raise ConfigError on the first key of ``raw`` that ``model`` does not define (recursively)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(raw).__name__}")
    for key, value in raw.items():
        if key not in model.model_fields:
            valid = _valid_keys(model, prefix)
            raise ConfigError(f"unknown config key {prefix}{key!s}; valid keys: {', '.join(valid)}")
        ann = model.model_fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and value is not None:
            _check_keys(value, ann, f"{prefix}{key}.")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict in place (value parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key=value (e.g. optim.lr=0.05)")
    key, _, text = override.partition("=")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a nested dict into an ExperimentConfig; unknown keys and bad values raise ConfigError."""
    _check_keys(raw, ExperimentConfig)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid config:\n{exc}") from exc


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment config, apply dotted overrides and validate.

    Raises:
        ConfigError: the file is missing or not a mapping, an override is malformed, a key is unknown (the
            message names it and lists the valid keys), or a value is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass one of configs/*.yaml")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a YAML mapping at the top level")
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """JSON/YAML-safe nested dict of a config (paths as strings, tuples as lists)."""
    return cfg.model_dump(mode="json")


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    """Write the resolved config as YAML (what ``load_config`` reads back to an equal config)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

"""Typed configuration of the network (pure data; the training config embeds it as ``model:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.config import Frozen
from common.preprocess import IMAGENET_MEAN, IMAGENET_STD


class NetConfig(Frozen):
    """The two-stream VI-ReID network of docs/method.md §2; defaults are the draft's SYSU-MM01 model."""

    arch: Literal["resnet50", "resnet34", "resnet18"] = "resnet50"
    specific_stages: int = Field(default=0, ge=0, le=2, description="modality-specific ResNet stages after the stem")
    last_stride: Literal[1, 2] = 1
    hagl: bool = True
    amg: bool = True
    num_stripes: int = Field(default=4, ge=1)
    gem_p: float = Field(default=3.0, gt=0)
    gem_learnable: bool = True
    part_dim: int | None = Field(default=None, ge=1, description="per-stripe linear reduction before the BNNeck")
    num_classes: int = Field(default=395, ge=1)
    dcl_dim: int = Field(default=256, ge=1)
    dcl_head_trainable: bool = False
    dcl_seed: int = 0
    flip_embed: bool = False
    input_height: int = 384
    input_width: int = 192
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

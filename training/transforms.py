"""Image transforms: training augmentation (torchvision v2) and the evaluation path shared with the service.

Training draws its randomness from the global torch RNG; ``PairedBatchDataset`` seeds it per image inside a
forked RNG, so augmentations are reproducible (exact resume) without touching the caller's RNG state.
Evaluation uses ``common.preprocess`` (decode, bilinear resize to H x W, [0, 1]) followed by normalisation, the
same steps the service runs before its ONNX graph (which normalises inside).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from common.preprocess import load_image, normalize, to_input
from model.config import NetConfig
from training.config import AugmentConfig


def build_train_transform(net: NetConfig, aug: AugmentConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised ``(3, H, W)`` float tensor with the augmentations of docs/method.md §4."""
    size = (net.input_height, net.input_width)
    # Resize on the PIL image: the same bilinear resampling as ``common.preprocess.to_input`` at evaluation.
    steps: list[Callable[..., object]] = [v2.Resize(size, antialias=True), v2.ToImage()]
    if aug.pad_crop and aug.pad > 0:
        steps += [v2.Pad(aug.pad), v2.RandomCrop(size)]
    if aug.flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if aug.grayscale_p > 0:  # a no-op on infrared images, whose three channels are already equal
        steps.append(v2.RandomGrayscale(p=aug.grayscale_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(net.mean), list(net.std))]
    if aug.erasing_p > 0:
        steps.append(v2.RandomErasing(p=aug.erasing_p, value=0))
    return v2.Compose(steps)


def eval_input(path: str | Path, net: NetConfig) -> np.ndarray:
    """Float32 ``(3, H, W)`` in [0, 1] exactly as the service prepares an upload (before normalisation)."""
    return to_input(load_image(path), net.input_height, net.input_width)


def eval_batch(paths: Sequence[str | Path], net: NetConfig) -> torch.Tensor:
    """Normalised ``(N, 3, H, W)`` evaluation batch of image files (what ``VIReIDNet.embed`` takes)."""
    batch = np.stack([eval_input(p, net) for p in paths])
    return torch.from_numpy(normalize(batch, net.mean, net.std))

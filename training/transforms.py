"""Image transforms: training augmentation (torchvision v2) and the evaluation path shared with the service.

Training draws its randomness from the global torch RNG; ``PairedBatchDataset`` seeds it per image inside a
forked RNG, so augmentations are reproducible (exact resume) without touching the caller's RNG state.
Evaluation uses ``common.preprocess`` (decode, bilinear resize to H x W, [0, 1]) followed by normalisation, the
same steps the service runs before its ONNX graph (which normalises inside).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
        steps.append(RandomErasing(aug.erasing_p, aug.erasing_area, aug.erasing_ratio))
    return v2.Compose(steps)


@dataclass(frozen=True)
class RandomErasing:
    """Random erasing (Zhong et al., AAAI 2020) as the public VI-ReID code runs it (AGW/CAJ, MMN ``RandomErasing``).

    With probability ``p``: up to ``attempts`` times draw an area fraction uniformly in ``area`` and an aspect ratio
    h/w uniformly in ``ratio``; the first box ``h = round(sqrt(A * r))``, ``w = round(sqrt(A / r))`` strictly
    smaller than the image is placed uniformly (inclusive bounds) and filled with ``value`` (0: the mean colour, on
    a normalised tensor). torchvision's ``RandomErasing`` differs: area at most 0.33 and a log-uniform ratio.
    Randomness comes from the global torch RNG (seeded per image by ``PairedBatchDataset``).
    """

    p: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    ratio: tuple[float, float] = (0.3, 1 / 0.3)
    value: float = 0.0
    attempts: int = 100

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """``(top, left, h, w)`` of one erasing draw on a ``height x width`` image, None when nothing is erased."""
        if float(torch.rand(())) > self.p:
            return None
        for _ in range(self.attempts):
            target = self._uniform(*self.area) * height * width
            aspect = self._uniform(*self.ratio)
            h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if h < height and w < width:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        return None

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Erase one box of a ``(C, H, W)`` tensor (a copy; the input is not modified)."""
        box = self.box(int(img.shape[-2]), int(img.shape[-1]))
        if box is None:
            return img
        top, left, h, w = box
        out = img.clone()
        out[..., top : top + h, left : left + w] = self.value
        return out


def eval_input(path: str | Path, net: NetConfig) -> np.ndarray:
    """Float32 ``(3, H, W)`` in [0, 1] exactly as the service prepares an upload (before normalisation)."""
    return to_input(load_image(path), net.input_height, net.input_width)


def eval_batch(paths: Sequence[str | Path], net: NetConfig) -> torch.Tensor:
    """Normalised ``(N, 3, H, W)`` evaluation batch of image files (what ``VIReIDNet.embed`` takes)."""
    batch = np.stack([eval_input(p, net) for p in paths])
    return torch.from_numpy(normalize(batch, net.mean, net.std))

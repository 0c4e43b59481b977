"""Crops for int8 calibration and for the reduced-precision agreement check, one set per modality.

Calibration crops come from the training identities of a data set root in the SYSU-MM01 layout (visible cameras
1, 2, 4, 5; infrared 3, 6), so each encoder is calibrated on its own modality; the agreement crops come from the
test identities, which calibration never saw. Both are prepared as the service prepares an upload
(``common.preprocess``: RGB, bilinear resize, float32 in [0, 1]); normalisation is inside the graph.
Without a data set (``--untrained`` benchmarks), ``synthetic_crops`` draws smooth random images instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from common.modality import Modality
from common.preprocess import load_image, to_input
from training.data.base import Sample
from training.data.sysu import SYSUMM01, gallery_samples, query_samples

DEFAULT_CALIBRATION_CROPS = 64
DEFAULT_HELDOUT_CROPS = 32

Split = Literal["calibration", "heldout"]
# (modality, split, count, generator) -> float32 (count or fewer, 3, H, W) images in [0, 1]
Draw = Callable[[Modality, Split, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class ModalityCrops:
    """Float32 ``(N, 3, H, W)`` images in [0, 1] of one modality: to calibrate with, and to compare on."""

    calibration: np.ndarray
    heldout: np.ndarray


def _drawn_inputs(
    samples: Sequence[Sample], count: int, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` distinct samples drawn at random (all of them when fewer), loaded as model inputs."""
    if not samples:
        raise ValueError("no images to draw crops from")
    chosen = rng.choice(len(samples), size=min(count, len(samples)), replace=False)
    return np.stack([to_input(load_image(samples[int(i)].path), height, width) for i in sorted(chosen)])


def _per_modality(draw: Draw, calibration: int, heldout: int, seed: int) -> dict[Modality, ModalityCrops]:
    """Each modality's calibration then held-out crops, in that order from one generator: a seed repeats them all."""
    rng = np.random.default_rng(seed)
    return {
        m: ModalityCrops(draw(m, "calibration", calibration, rng), draw(m, "heldout", heldout, rng)) for m in Modality
    }


def dataset_crops(
    root: Path,
    height: int,
    width: int,
    calibration: int = DEFAULT_CALIBRATION_CROPS,
    heldout: int = DEFAULT_HELDOUT_CROPS,
    seed: int = 0,
) -> dict[Modality, ModalityCrops]:
    """Calibration crops from the training ids and held-out crops from the test ids of a SYSU-MM01-layout root.

    Raises:
        DatasetLayoutError: ``root`` is not in the SYSU-MM01 layout.
    """
    data = SYSUMM01(root, num_trials=1)
    pools: dict[Split, dict[Modality, Sequence[Sample]]] = {
        "calibration": {Modality.VISIBLE: data.train_visible, Modality.INFRARED: data.train_infrared},
        "heldout": {Modality.VISIBLE: gallery_samples(root, "all", 0), Modality.INFRARED: query_samples(root)},
    }

    def draw(modality: Modality, split: Split, count: int, rng: np.random.Generator) -> np.ndarray:
        return _drawn_inputs(pools[split][modality], count, height, width, rng)

    return _per_modality(draw, calibration, heldout, seed)


def synthetic_crops(
    height: int,
    width: int,
    calibration: int = DEFAULT_CALIBRATION_CROPS,
    heldout: int = DEFAULT_HELDOUT_CROPS,
    seed: int = 0,
) -> dict[Modality, ModalityCrops]:
    """Smooth random images (8x-upsampled noise plus fine noise) for networks without a data set (benchmarks)."""

    def draw(_modality: Modality, _split: Split, count: int, rng: np.random.Generator) -> np.ndarray:
        coarse = rng.random((count, 3, -(-height // 8), -(-width // 8)), dtype=np.float32)
        smooth = coarse.repeat(8, axis=2).repeat(8, axis=3)[:, :, :height, :width]
        noisy = smooth + 0.05 * rng.standard_normal(smooth.shape, dtype=np.float32)
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)

    return _per_modality(draw, calibration, heldout, seed)

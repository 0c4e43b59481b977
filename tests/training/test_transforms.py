"""Training and evaluation transforms: sizes, normalisation, greyscale switch, eval path = service preprocessing."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_image, normalize, to_input
from model.config import NetConfig
from training.config import AugmentConfig
from training.transforms import RandomErasing, build_train_transform, eval_batch

NET = NetConfig(input_height=16, input_width=8)
NO_AUG = AugmentConfig(flip=False, pad_crop=False, erasing_p=0.0)


def _image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(path)
    return path


def test_without_augmentation_train_equals_eval_preprocessing(tmp_path: Path) -> None:
    path = _image(tmp_path)
    train = build_train_transform(NET, NO_AUG)(load_image(path))
    expected = normalize(to_input(load_image(path), 16, 8)[None], IMAGENET_MEAN, IMAGENET_STD)[0]
    assert train.shape == (3, 16, 8)
    np.testing.assert_allclose(train.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(eval_batch([path], NET)[0].numpy(), expected, atol=0)


def test_greyscale_switch_makes_channels_equal(tmp_path: Path) -> None:
    img = load_image(_image(tmp_path))
    out = build_train_transform(NET, NO_AUG.model_copy(update={"grayscale_p": 1.0}))(img)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    raw = out * std + mean
    torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[1], raw[2], atol=1e-5, rtol=0)
    colour = build_train_transform(NET, NO_AUG)(img) * std + mean
    assert not torch.allclose(colour[0], colour[1], atol=1e-3)


def test_flip_and_erasing_follow_the_seed(tmp_path: Path) -> None:
    img = load_image(_image(tmp_path))
    transform = build_train_transform(NET, AugmentConfig(pad=2, erasing_p=1.0))
    torch.manual_seed(5)
    a = transform(img)
    torch.manual_seed(5)
    b = transform(img)
    torch.manual_seed(6)
    c = transform(img)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a == 0).any()  # random erasing (p = 1) wrote zeros


def _public_erasing_box(rng: random.Random, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The public code's draw (MMN ``random_erasing.py``, AGW/CAJ ``ChannelRandomErasing``) with p = 1, restated."""
    for _ in range(100):
        target = rng.uniform(0.02, 0.4) * height * width
        aspect = rng.uniform(0.3, 1 / 0.3)
        h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if w < width and h < height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return None


def _box_stats(boxes: list[tuple[int, int, int, int] | None], height: int, width: int) -> np.ndarray:
    """Per box: area fraction, aspect ratio h/w, top / (height - h)."""
    arr = np.array([b for b in boxes if b is not None], dtype=float)
    top, h, w = arr[:, 0], arr[:, 2], arr[:, 3]
    return np.stack([h * w / (height * width), h / w, top / np.maximum(height - h, 1)], axis=1)


def test_random_erasing_draws_boxes_as_the_public_code() -> None:
    """Area fraction uniform in [0.02, 0.4] and aspect ratio h/w uniform in [0.3, 1/0.3] (torchvision: area <= 0.33,
    log-uniform ratio): the accepted boxes' statistics match the public code's within sampling error."""
    height, width, n = 384, 192, 4000
    torch.manual_seed(0)
    ours = _box_stats([RandomErasing(p=1.0).box(height, width) for _ in range(n)], height, width)
    rng = random.Random(0)
    public = _box_stats([_public_erasing_box(rng, height, width) for _ in range(n)], height, width)
    assert len(ours) == len(public) == n
    for column, name in enumerate(("area", "ratio", "top")):
        a, b = ours[:, column], public[:, column]
        assert abs(a.mean() - b.mean()) < 4 * np.sqrt((a.var() + b.var()) / n), name
        np.testing.assert_allclose(np.quantile(a, [0.1, 0.5, 0.9]), np.quantile(b, [0.1, 0.5, 0.9]), rtol=0.08)
    assert 0.38 < ours[:, 0].max() <= 0.42  # beyond torchvision's 0.33
    assert ours[:, 1].mean() > 1.6  # a log-uniform ratio over the same range would average ~1.3


def test_random_erasing_fills_one_box_with_zero_and_keeps_the_input() -> None:
    img = torch.ones(3, 40, 20)
    torch.manual_seed(1)
    out = RandomErasing(p=1.0)(img)
    assert torch.equal(img, torch.ones(3, 40, 20))
    erased = (out == 0).all(dim=0)
    rows, cols = erased.any(dim=1).nonzero(), erased.any(dim=0).nonzero()
    assert int(erased.sum()) == len(rows) * len(cols) > 0  # one filled rectangle
    assert (out[:, ~erased] == 1).all()
    torch.manual_seed(1)
    assert RandomErasing(p=0.0)(img) is img

"""Training and evaluation transforms: sizes, normalisation, greyscale switch, eval path = service preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_image, normalize, to_input
from model.config import NetConfig
from training.config import AugmentConfig
from training.transforms import build_train_transform, eval_batch

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

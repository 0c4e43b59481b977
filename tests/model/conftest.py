from collections.abc import Callable

import pytest
import torch

from model.config import NetConfig
from model.net import VIReIDNet

HEIGHT, WIDTH = 64, 32


@pytest.fixture
def make_net() -> Callable[..., VIReIDNet]:
    """Build a tiny seeded VIReIDNet (resnet18, 6 classes, 64x32 input); keyword arguments override NetConfig."""

    def build(**overrides: object) -> VIReIDNet:
        fields = {"arch": "resnet18", "num_classes": 6, "input_height": HEIGHT, "input_width": WIDTH, **overrides}
        torch.manual_seed(0)
        return VIReIDNet(NetConfig(**fields))

    return build


@pytest.fixture
def images() -> Callable[..., torch.Tensor]:
    """Seeded ``(n, 3, 64, 32)`` standard-normal batches (stand-ins for ImageNet-normalised images)."""

    def draw(n: int, seed: int = 0) -> torch.Tensor:
        return torch.randn(n, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))

    return draw

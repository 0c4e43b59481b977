"""Two-stream torchvision ResNet: a stem (and optional stages) per modality, shared remaining stages, HAGL."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from torch import Tensor, nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from common.modality import Modality
from model.layers.hagl import HAGL

logger = logging.getLogger(__name__)

RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
STEM = ("conv1", "bn1", "relu", "maxpool")
STAGES = ("layer1", "layer2", "layer3", "layer4")
HAGL_AFTER = "layer3"


class PretrainedWeightsMismatchError(ValueError):
    """A torchvision state dict does not fit the two-stream backbone (unexpected, missing or mis-shaped keys)."""


def build_resnet(arch: str, last_stride: int = 1) -> ResNet:
    """A randomly initialised torchvision ResNet (no download) whose layer4 has stride ``last_stride``.

    Raises:
        ValueError: unknown ``arch`` or ``last_stride`` not 1 or 2.
    """
    if arch not in RESNETS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(RESNETS)}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    net = RESNETS[arch](weights=None)
    first = net.layer4[0]
    # torchvision puts the stride on conv2 of a Bottleneck (ResNet v1.5) and on conv1 of a BasicBlock.
    strided = first.conv2 if isinstance(first, Bottleneck) else first.conv1
    assert isinstance(first, Bottleneck | BasicBlock) and first.downsample is not None
    strided.stride = (last_stride, last_stride)
    first.downsample[0].stride = (last_stride, last_stride)
    return net


class ModalityStem(nn.Module):
    """The modality-specific part: conv1, bn1, relu, maxpool and the first ``len(stages)`` ResNet stages.

    Child names match torchvision's, so a torchvision key ``layer1.0.conv1.weight`` maps to
    ``<this module>.layer1.0.conv1.weight``.
    """

    def __init__(self, resnet: ResNet, stages: tuple[str, ...]) -> None:
        super().__init__()
        self.names = STEM + stages
        for name in self.names:
            self.add_module(name, getattr(resnet, name))

    def forward(self, x: Tensor) -> Tensor:
        """Run ``(N, 3, H, W)`` images through the stem and specific stages."""
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class SharedStages(nn.Module):
    """The shared ResNet stages, with HAGL after layer3 when enabled."""

    def __init__(self, resnet: ResNet, stages: tuple[str, ...], hagl: HAGL | None) -> None:
        super().__init__()
        self.names = stages
        for name in stages:
            self.add_module(name, getattr(resnet, name))
        self.hagl = hagl

    def forward(self, x: Tensor) -> Tensor:
        """Run the stem output through the shared stages."""
        for name in self.names:
            x = getattr(self, name)(x)
            if name == HAGL_AFTER and self.hagl is not None:
                x = self.hagl(x)
        return x


class TwoStreamResNet(nn.Module):
    """Two-stream ResNet of docs/method.md §2.

    ``specific[m]`` (one per :class:`Modality`) holds the stem plus the first ``specific_stages`` stages, each
    modality its own copy; ``shared`` holds the remaining stages and HAGL (after layer3, 1024 channels for
    ResNet-50). All torchvision layers start from torchvision's own random init; ImageNet weights are copied in by
    :func:`load_torchvision_resnet`.
    """

    def __init__(
        self, arch: str = "resnet50", specific_stages: int = 0, last_stride: int = 1, hagl: bool = True
    ) -> None:
        super().__init__()
        if not 0 <= specific_stages <= 2:
            raise ValueError(f"specific_stages must be 0, 1 or 2, got {specific_stages}")
        self.arch = arch
        self.specific_names = STAGES[:specific_stages]
        self.shared_names = STAGES[specific_stages:]
        self.specific = nn.ModuleDict(
            {m.value: ModalityStem(build_resnet(arch, last_stride), self.specific_names) for m in Modality}
        )
        shared = build_resnet(arch, last_stride)
        self.out_channels: int = shared.fc.in_features
        hagl_channels = self.out_channels // 2
        self.shared = SharedStages(shared, self.shared_names, HAGL(hagl_channels) if hagl else None)

    def forward_stem(self, x: Tensor, modality: Modality) -> Tensor:
        """The modality-specific part for images of ``modality``."""
        out: Tensor = self.specific[Modality(modality).value](x)
        return out

    def forward_shared(self, x: Tensor) -> Tensor:
        """The shared part (stages and HAGL) on stem outputs of any modality; returns the layer4 map."""
        out: Tensor = self.shared(x)
        return out

    def forward(self, x: Tensor, modality: Modality) -> Tensor:
        """``(N, 3, H, W)`` images of one modality -> ``(N, C, H/16, W/16)`` layer4 map (last stride 1)."""
        return self.forward_shared(self.forward_stem(x, modality))

    def pretrained_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes (relative to this module) of the layers that ImageNet weights initialise."""
        return ("specific.",) + tuple(f"shared.{name}." for name in self.shared_names)

    def torchvision_targets(self, key: str) -> list[str]:
        """Names in this module's state dict that the torchvision key ``key`` is copied to (empty if none)."""
        top = key.split(".", 1)[0]
        if top in STEM or top in self.specific_names:
            return [f"specific.{m.value}.{key}" for m in Modality]
        if top in self.shared_names:
            return [f"shared.{key}"]
        return []


def load_torchvision_resnet(net: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Copy a torchvision ResNet state dict into both modality copies and the shared stages of ``net``.

    Args:
        net: a :class:`TwoStreamResNet`, or a module holding one as ``net.backbone`` (``VIReIDNet``).
        state_dict: e.g. ``torch.load("resnet50-0676ba61.pth")``; the caller reads the file.

    Raises:
        PretrainedWeightsMismatchError: a key other than ``fc.*`` has no place in the backbone, a backbone layer
            (other than HAGL, which is new) gets no weight, or a shape differs (e.g. resnet18 weights for a
            resnet50 net). ``num_batches_tracked`` may be absent (old torchvision files lack it).
    """
    backbone = net if isinstance(net, TwoStreamResNet) else getattr(net, "backbone", None)
    if not isinstance(backbone, TwoStreamResNet):
        raise TypeError(f"expected a TwoStreamResNet or a module with one as .backbone, got {type(net).__name__}")
    own = backbone.state_dict()
    mapped: dict[str, Tensor] = {}
    unexpected, mis_shaped = [], []
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        targets = backbone.torchvision_targets(key)
        if not targets or any(t not in own for t in targets):
            unexpected.append(key)
            continue
        for target in targets:
            if own[target].shape != value.shape:
                mis_shaped.append(f"{key}: file {tuple(value.shape)} vs net {tuple(own[target].shape)}")
            mapped[target] = value
    missing = [
        k for k in own if k not in mapped and not k.startswith("shared.hagl.") and not k.endswith("num_batches_tracked")
    ]
    if unexpected or missing or mis_shaped:
        raise PretrainedWeightsMismatchError(
            f"the state dict does not fit a torchvision {backbone.arch}: "
            f"unexpected keys {unexpected[:5]} ({len(unexpected)}), missing net keys {missing[:5]} ({len(missing)}), "
            f"shape mismatches {mis_shaped[:5]} ({len(mis_shaped)}). Expected torchvision's {backbone.arch} "
            "state dict (keys conv1.*, bn1.*, layer1-4.*, fc.*), without a 'module.' prefix; check model.arch."
        )
    result = backbone.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    logger.info("loaded %d torchvision tensors into %d backbone tensors", len(state_dict), len(mapped))

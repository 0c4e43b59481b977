"""Hybrid attention guided learning (HAGL): instance normalisation plus a CBAM mask shared by both branches."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelAttention(nn.Module):
    """CBAM channel mask ``sigmoid(MLP(avgpool F) + MLP(maxpool F))``, one two-layer MLP shared by both pools."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return the ``(N, C, 1, 1)`` mask of ``(N, C, H, W)`` features."""
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial mask ``sigmoid(Conv7x7([mean_c F; max_c F]))``."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return the ``(N, 1, H, W)`` mask of ``(N, C, H, W)`` features."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAMMask(nn.Module):
    """The CBAM attention mask ``M(F) = Mc(F) * Ms(Mc(F) * F)``, broadcast to ``(N, C, H, W)``, values in (0, 1).

    Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018. The MLP convolutions and the 7x7 conv
    have no bias, as in the common public implementations.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """Return the mask (not the masked features) of ``(N, C, H, W)`` features."""
        mc = self.channel(x)
        ms = self.spatial(mc * x)
        return mc * ms

    def masked(self, x: Tensor) -> Tensor:
        """``M(x) * x`` as ``Ms * (Mc * x)``: reuses ``Mc * x`` and never builds the full-size mask."""
        refined = self.channel(x) * x
        return self.spatial(refined) * refined


class HAGL(nn.Module):
    """Hybrid attention guided learning: ``X = M(F) * F + (1 - M(F_bar)) * F_bar`` with ``F_bar = IN(F)``.

    ``IN`` is an affine InstanceNorm2d; ``M`` is one :class:`CBAMMask` applied to both F and F_bar (shared weights),
    so attention keeps the salient part of the raw features and fills the rest from their style-normalised version.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.mask = CBAMMask(channels, reduction, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """Apply HAGL to ``(N, C, H, W)`` features; the output has the same shape.

        Computed as ``M(F) * F + F_bar - M(F_bar) * F_bar``, the same value with two full-size products fewer per
        mask (docs/benchmarks.md, where the encoder's time goes).
        """
        normed = self.norm(x)
        return self.mask.masked(x) + normed - self.mask.masked(normed)

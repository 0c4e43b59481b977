"""Generalised-mean (GeM) pooling over horizontal stripes, export-friendly for any height."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def stripe_bounds(height: int, num_stripes: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of ``num_stripes`` horizontal stripes, as adaptive pooling picks them.

    Stripe i covers rows ``floor(i*H/P)`` to ``ceil((i+1)*H/P)``, so uneven heights give overlapping stripes
    (never empty ones) exactly like ``adaptive_avg_pool2d(x, (P, 1))``.

    Raises:
        ValueError: ``height < num_stripes``.
    """
    if height < num_stripes:
        raise ValueError(f"feature map height {height} is smaller than the number of stripes {num_stripes}")
    return [((i * height) // num_stripes, math.ceil((i + 1) * height / num_stripes)) for i in range(num_stripes)]


class StripeGeM(nn.Module):
    """GeM pooling of each horizontal stripe: ``(mean over stripe of clamp(x, eps)^p)^(1/p)``.

    One exponent ``p`` is shared by all stripes; it is a parameter when ``learnable`` and a buffer otherwise.
    The stripe boundaries are Python integers computed from the (static) feature-map height, so the traced or
    exported graph has only constant slices and no data-dependent shapes.
    """

    def __init__(self, num_stripes: int = 4, p: float = 3.0, learnable: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if num_stripes < 1:
            raise ValueError(f"num_stripes must be >= 1, got {num_stripes}")
        self.num_stripes = num_stripes
        self.eps = eps
        p_init = torch.full((1,), float(p))
        self.p: Tensor
        if learnable:
            self.p = nn.Parameter(p_init)
        else:
            self.register_buffer("p", p_init)

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``(N, C, H, W)`` into ``(N, P, C)`` stripe vectors (stripe 0 at the top)."""
        powered = x.clamp(min=self.eps).pow(self.p)
        height = int(x.shape[2])
        if height % self.num_stripes == 0:  # equal stripes: one reshape and one mean, no slices
            n, c, _, w = powered.shape
            pooled = powered.reshape(n, c, self.num_stripes, height // self.num_stripes, w).mean(dim=(3, 4))
            return pooled.transpose(1, 2).pow(1.0 / self.p)
        bounds = stripe_bounds(height, self.num_stripes)
        stripes = [powered[:, :, start:end].mean(dim=(2, 3)) for start, end in bounds]
        return torch.stack(stripes, dim=1).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        """Summary for ``print(module)``."""
        return f"num_stripes={self.num_stripes}, p={float(self.p.detach()[0]):.4f}, eps={self.eps}"

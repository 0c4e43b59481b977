"""Projection head of the distribution consistency loss (DCL): a fixed, seeded random projection by default."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DCLHead(nn.Module):
    """``L2norm -> Linear(C->D) -> BN -> ReLU -> Linear(D->D) -> BN -> L2norm`` (docs/method.md §3).

    By default every parameter has ``requires_grad=False``: the linear weights are a fixed random projection drawn
    from a local generator seeded with ``seed`` (N(0, 1/fan_in)), the BN affine parameters stay at weight 1, bias 0.
    A head trained only by the DCL collapses to a constant; ``trainable=True`` is kept for that ablation.

    Both BN layers are built with ``track_running_stats=False``: they always normalise with the statistics of the
    batch at hand, in train and eval mode alike, and keep no running buffers. So the head is a pure function of its
    input batch: ``net.train()``/``net.eval()`` do not change it, forward calls do not mutate it (no drifting running
    statistics in a "frozen" head), and it needs no state in checkpoints beyond the seeded weights. Gradients still
    flow through the batch statistics to the backbone. The price is that it needs a batch of >= 2 rows, which a
    training batch always is. The linear layers have no bias: a bias in front of BatchNorm cancels out.
    """

    def __init__(self, in_dim: int, out_dim: int = 256, seed: int = 0, trainable: bool = False) -> None:
        super().__init__()
        self.seed = seed
        self.fc1 = nn.Linear(in_dim, out_dim, bias=False)
        self.bn1 = nn.BatchNorm1d(out_dim, track_running_stats=False)
        self.fc2 = nn.Linear(out_dim, out_dim, bias=False)
        self.bn2 = nn.BatchNorm1d(out_dim, track_running_stats=False)
        self.reset_parameters()
        self.requires_grad_(trainable)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw the projection from a generator seeded with ``self.seed``; BN affine at identity."""
        generator = torch.Generator().manual_seed(self.seed)
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, std=1.0 / math.sqrt(fc.in_features), generator=generator)
        for bn in (self.bn1, self.bn2):
            bn.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Project ``(N, C)`` features (N >= 2) to ``(N, out_dim)`` unit vectors."""
        x = F.normalize(x, dim=1)
        x = F.relu(self.bn1(self.fc1(x)))
        return F.normalize(self.bn2(self.fc2(x)), dim=1)

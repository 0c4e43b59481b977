"""Learning-rate schedule of docs/method.md §4: per-epoch linear warm-up, then step decay at the milestones.

The factor is applied per epoch (as in the AGW code's ``adjust_learning_rate``): with the defaults (base LR 0.1,
``warmup_start`` 0.1, 10 warm-up epochs) epoch ``e < 10`` runs at ``0.1 * (e + 1) / 10`` (0.01, 0.02, ..., 0.1),
epochs 10-19 at 0.1, 20-59 at 0.01 and 60+ at 0.001. Each parameter group's own rate (``lr x lr_mult``, e.g. the
pretrained backbone at 0.1x) is scaled by the same factor, since ``LambdaLR`` multiplies each group's initial LR.
"""

from __future__ import annotations

from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from training.config import ScheduleConfig


def lr_factor(epoch: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the base LR during 0-based ``epoch``.

    Warm-up interpolates linearly from ``warmup_start`` at epoch 0 to 1.0 at epoch ``warmup_epochs - 1``; after
    it, the factor is ``gamma ** (number of milestones <= epoch)``.
    """
    if epoch < cfg.warmup_epochs:
        if cfg.warmup_epochs == 1:
            return 1.0
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * epoch / (cfg.warmup_epochs - 1)
    passed = sum(1 for m in cfg.milestones if epoch >= m)
    return float(cfg.gamma**passed)


def build_scheduler(optimizer: Optimizer, cfg: ScheduleConfig) -> LambdaLR:
    """A LambdaLR stepped once per epoch (after it); its ``state_dict`` round-trips through checkpoints."""
    return LambdaLR(optimizer, lr_lambda=partial(lr_factor, cfg=cfg))

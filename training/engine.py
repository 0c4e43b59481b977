"""The training epoch: the optimiser, one pass over the batches, and the TensorBoard names of what it logs."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import SGD, Optimizer

from model.net import VIReIDNet
from training.config import LossConfig, OptimConfig
from training.losses import compute_losses

logger = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor, Tensor]


def build_optimizer(net: VIReIDNet, cfg: OptimConfig) -> SGD:
    """SGD over the network's parameter groups (pretrained backbone at ``backbone_lr_mult`` x ``lr``)."""
    groups = net.param_groups(cfg.lr, cfg.backbone_lr_mult)
    return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def train_one_epoch(
    net: nn.Module,
    batches: Iterable[Batch],
    optimizer: Optimizer,
    scaler: torch.amp.GradScaler,
    loss_cfg: LossConfig,
    device: torch.device,
    amp: bool = False,
    max_iters: int | None = None,
    log_every: int = 20,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Run one epoch of ``(vis, ir, pids)`` batches; returns the mean of each loss term (this rank).

    ``net`` may be wrapped in DDP. Mixed precision (float16 autocast + GradScaler) runs only on CUDA with ``amp``.
    Wrap ``batches`` in tqdm in a CLI; ``on_step`` receives the running means after every step (a progress bar's
    postfix). A non-finite loss raises ``FloatingPointError`` (the run is diverging).
    """
    net.train()
    use_amp = amp and device.type == "cuda"
    sums: dict[str, float] = defaultdict(float)
    count = 0
    for step, (vis, ir, pids) in enumerate(batches):
        if max_iters is not None and step >= max_iters:
            break
        vis, ir, pids = (t.to(device, non_blocking=True) for t in (vis, ir, pids))
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            out = net(vis, ir)
        losses = compute_losses(out, pids, loss_cfg)
        if not torch.isfinite(losses["total"]):
            raise FloatingPointError(f"non-finite loss at step {step}: { ({k: float(v) for k, v in losses.items()}) }")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        for key, value in losses.items():
            sums[key] += float(value.detach())
        count += 1
        if on_step is not None:
            on_step({k: v / count for k, v in sums.items()})
        if step % log_every == 0:
            logger.debug("step %d loss %.4f", step, losses["total"].item())
    return {k: v / max(count, 1) for k, v in sums.items()}


def tensorboard_scalars(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    """Flatten ``{"sysu/all": {"R1": x}}`` or ``{"id": x}`` into ``{"prefix/sysu/all/R1": x}`` scalars."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(tensorboard_scalars(f"{prefix}/{key}", value))
        else:
            flat[f"{prefix}/{key}"] = float(value)
    return flat

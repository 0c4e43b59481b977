"""One training epoch and one evaluation pass (the loop pieces ``training.train`` and ``training.evaluate`` share)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import SGD, Optimizer

from model.net import VIReIDNet
from training.config import LossConfig, OptimConfig
from training.data.base import EvalSplit, Sample
from training.features import Progress, distance_matrix, embed_samples
from training.losses import compute_losses
from training.metrics import split_metrics

logger = logging.getLogger(__name__)

RANKS = (1, 5, 10, 20)
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
) -> dict[str, float]:
    """Run one epoch of ``(vis, ir, pids)`` batches; returns the mean of each loss term (this rank).

    ``net`` may be wrapped in DDP. Mixed precision (float16 autocast + GradScaler) runs only on CUDA with ``amp``.
    Wrap ``batches`` in tqdm in a CLI. A non-finite loss raises ``FloatingPointError`` (the run is diverging).
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
        if step % log_every == 0:
            logger.debug("step %d loss %.4f", step, losses["total"].item())
    return {k: v / max(count, 1) for k, v in sums.items()}


def metrics_dict(cmc: np.ndarray, mAP: float, mINP: float) -> dict[str, float]:
    """``{"R1", "R5", "R10", "R20", "mAP", "mINP"}`` as fractions (ranks beyond the CMC length are skipped)."""
    out = {f"R{r}": float(cmc[r - 1]) for r in RANKS if r <= len(cmc)}
    out.update(mAP=float(mAP), mINP=float(mINP))
    return out


def _unique_samples(splits: Sequence[EvalSplit]) -> tuple[list[Sample], dict[tuple[str, str], int]]:
    """Every distinct (path, modality) over the splits' queries and galleries, with its row."""
    rows: dict[tuple[str, str], int] = {}
    samples: list[Sample] = []
    for split in splits:
        for s in (*split.query, *split.gallery):
            key = (str(s.path), s.modality.value)
            if key not in rows:
                rows[key] = len(samples)
                samples.append(s)
    return samples, rows


@torch.no_grad()
def evaluate(
    net: VIReIDNet,
    splits: Sequence[EvalSplit],
    device: torch.device,
    flip: bool | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
) -> dict[str, dict[str, float]]:
    """Cross-modal retrieval metrics of ``net`` on evaluation splits, averaged over the trials of each setting.

    Each distinct image is embedded once (SYSU's 10 trials share their queries); distances are cosine distances
    of the embeddings; each split is scored by its protocol (``training.metrics.split_metrics``).

    Returns:
        ``{"sysu/all": {"R1": ..., "R5": ..., "R10": ..., "R20": ..., "mAP": ..., "mINP": ...}, ...}`` fractions.
    """
    samples, rows = _unique_samples(splits)
    feats = embed_samples(net, samples, device, flip, batch_size, workers, progress)
    per_group: dict[str, list[dict[str, float]]] = defaultdict(list)
    for split in splits:
        q = feats[[rows[(str(s.path), s.modality.value)] for s in split.query]]
        g = feats[[rows[(str(s.path), s.modality.value)] for s in split.gallery]]
        cmc, mAP, mINP = split_metrics(distance_matrix(q, g), split)
        per_group[split.group].append(metrics_dict(cmc, mAP, mINP))
    results = {}
    for group, trials in per_group.items():
        results[group] = {k: float(np.mean([t[k] for t in trials])) for k in trials[0]}
        logger.info("%s (%d trials): %s", group, len(trials), format_metrics(results[group]))
    return results


def format_metrics(metrics: dict[str, float]) -> str:
    """``R1 45.20 R5 ... mAP 40.10 mINP 25.00`` in percent."""
    return " ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())


def tensorboard_scalars(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    """Flatten ``{"sysu/all": {"R1": x}}`` or ``{"id": x}`` into ``{"prefix/sysu/all/R1": x}`` scalars."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(tensorboard_scalars(f"{prefix}/{key}", value))
        else:
            flat[f"{prefix}/{key}"] = float(value)
    return flat

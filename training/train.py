"""Training CLI: ``python -m training.train configs/sysu.yaml optim.lr=0.05 data.root=/data/SYSU-MM01 [--resume]``.

Multi-GPU: ``torchrun --nproc_per_node=4 -m training.train configs/sysu.yaml`` (DDP; P x K per GPU). The run
directory ``run.out_dir/experiment`` receives ``config.yaml`` (the resolved config), ``checkpoint.pt`` (last
epoch), ``checkpoints/epoch_NNN.pt`` and ``tb/`` (TensorBoard: losses, lr, evaluation metrics).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.backbone import PretrainedWeightsMismatchError
from model.net import VIReIDNet
from training.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    PretrainedWeightsNotFoundError,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
    set_rng_state,
)
from training.config import ConfigError, ExperimentConfig, config_to_dict, load_config, save_config
from training.data.base import DatasetLayoutError, VIReIDDataset
from training.data.datasets import build_dataset
from training.distributed import DistInfo, barrier, cleanup, init_distributed, mean_over_ranks
from training.engine import build_optimizer, tensorboard_scalars, train_one_epoch
from training.eval_loop import evaluate_splits, format_metrics
from training.features import Progress
from training.samplers import IdentitySampler, PairedBatchDataset
from training.schedule import build_scheduler
from training.transforms import build_train_transform

logger = logging.getLogger(__name__)

# Keys that may differ between a checkpoint's config and the config of the run resuming it.
RESUMABLE_CHANGES = (
    "schedule.epochs",
    "run.eval_every",
    "run.device",
    "run.log_every",
    "data.workers",
    "data.eval_batch_size",
    "data.root",
)


class RunExistsError(FileExistsError):
    """The run directory already holds a checkpoint and ``--resume`` was not given."""


class ResumeMismatchError(ValueError):
    """The config of a resumed run differs from the checkpoint's in a key that changes the training stream."""


# Bad inputs the CLI reports as one error line (exit status 2) instead of a traceback.
USER_ERRORS = (
    DatasetLayoutError,
    PretrainedWeightsNotFoundError,
    PretrainedWeightsMismatchError,
    CheckpointError,
    RunExistsError,
    ResumeMismatchError,
)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global RNGs (once, in the CLI; library code uses local generators)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_config(cfg: ExperimentConfig, stored: dict[str, Any]) -> None:
    """Refuse to resume with a config that would not continue the same run (all offending keys named)."""
    new, old = _flatten(config_to_dict(cfg)), _flatten(stored)
    diff = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k) and k not in RESUMABLE_CHANGES)
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ResumeMismatchError(
            f"cannot resume {cfg.run_dir}: the config differs from the checkpoint's in {details}. "
            f"Only {', '.join(RESUMABLE_CHANGES)} may change; start a new experiment name otherwise."
        )


def with_num_classes(cfg: ExperimentConfig, num_classes: int) -> ExperimentConfig:
    """The config with ``model.num_classes`` set to the data set's number of training identities."""
    if cfg.model.num_classes == num_classes:
        return cfg
    logger.info(
        "model.num_classes %d -> %d (training identities of %s)", cfg.model.num_classes, num_classes, cfg.data.name
    )
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"num_classes": num_classes})})


def _evaluate_and_log(
    net: VIReIDNet,
    dataset: VIReIDDataset,
    cfg: ExperimentConfig,
    info: DistInfo,
    writer: Any,
    epoch: int,
    progress: Progress | None,
) -> dict[str, dict[str, float]]:
    results = evaluate_splits(
        net, dataset.eval_splits(), info.device, None, cfg.data.eval_batch_size, cfg.data.workers, progress
    )
    for group, metrics in results.items():
        logger.info("epoch %d eval %s: %s", epoch, group, format_metrics(metrics))
    if writer is not None:
        for key, value in tensorboard_scalars("eval", results).items():
            writer.add_scalar(key, value, epoch)
    return results


def fit(cfg: ExperimentConfig, info: DistInfo, resume: bool = False, progress: Progress | None = None) -> Path:
    """Train ``cfg`` from scratch or from the run directory's last checkpoint; returns the checkpoint path.

    Raises:
        RunExistsError: the run directory has a checkpoint and ``resume`` is False.
        ResumeMismatchError: resuming with a config that changes the training stream.
        training.data.base.DatasetLayoutError: the data set folder is missing or not in its layout.
        training.checkpoint.PretrainedWeightsNotFoundError: ``run.pretrained`` names a missing file.
    """
    run_dir = cfg.run_dir
    last = run_dir / CHECKPOINT_NAME
    if last.exists() and not resume:
        raise RunExistsError(
            f"{last} exists; pass --resume to continue that run, or set another experiment name or run.out_dir"
        )
    dataset = build_dataset(cfg.data)
    cfg = with_num_classes(cfg, dataset.num_train_pids)
    net = VIReIDNet(cfg.model)
    ckpt = load_checkpoint(last) if resume and last.exists() else None
    if ckpt is None and cfg.run.pretrained is not None:
        load_pretrained(net, cfg.run.pretrained)
    net.to(info.device)
    optimizer = build_optimizer(net, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.run.amp and info.device.type == "cuda")
    sampler = IdentitySampler(
        [s.pid for s in dataset.train_visible],
        [s.pid for s in dataset.train_infrared],
        cfg.sampler.num_ids,
        cfg.sampler.num_instances,
        cfg.run.seed,
        cfg.sampler.epoch,
        info.rank,
        info.world_size,
    )
    train_set = PairedBatchDataset(
        dataset.train_visible, dataset.train_infrared, sampler, build_train_transform(cfg.model, cfg.augment)
    )
    start_epoch = 0
    if ckpt is not None:
        check_resume_config(cfg, ckpt["config"])
        net.load_state_dict(ckpt["model"], strict=True)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
        start_epoch = int(ckpt["epoch"])
        logger.info("resumed %s after epoch %d", last, start_epoch)
    model: torch.nn.Module = net
    if info.enabled:
        model = DistributedDataParallel(net, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    writer = None
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    for epoch in range(start_epoch, cfg.schedule.epochs):
        train_set.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=None,
            shuffle=False,
            num_workers=cfg.data.workers,
            pin_memory=info.device.type == "cuda",
            generator=torch.Generator().manual_seed(epoch),
        )
        batches: Iterable[Any] = progress(loader, f"epoch {epoch + 1}/{cfg.schedule.epochs}") if progress else loader
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
        losses = train_one_epoch(
            model, batches, optimizer, scaler, cfg.loss, info.device, cfg.run.amp, cfg.run.max_iters, cfg.run.log_every
        )
        losses = mean_over_ranks(losses, info)
        scheduler.step()
        done = epoch + 1
        if info.is_main:
            logger.info(
                "epoch %d/%d lr %s loss %s",
                done,
                cfg.schedule.epochs,
                " ".join(f"{k} {v:.2e}" for k, v in lrs.items()),
                " ".join(f"{k} {v:.4f}" for k, v in losses.items()),
            )
            assert writer is not None
            for key, value in {
                **tensorboard_scalars("train/loss", losses),
                **tensorboard_scalars("train/lr", lrs),
            }.items():
                writer.add_scalar(key, value, done)
            every = cfg.run.eval_every
            if every and (done % every == 0 or done == cfg.schedule.epochs):
                _evaluate_and_log(net, dataset, cfg, info, writer, done, progress)
            state = {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "sampler": sampler.state_dict(),
            }
            save_checkpoint(run_dir, state, cfg, done, cfg.run.keep_epoch_checkpoints)
            writer.flush()
        barrier(info)
    if writer is not None:
        writer.close()
    return last


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments: a config file, dotted overrides and ``--resume``."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="experiment YAML, e.g. configs/sysu.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=0.05 data.root=/data/SYSU")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt if it exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: configure logging, join DDP if launched by torchrun, seed once, train."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    info = init_distributed(cfg.run.device)
    try:
        seed_everything(cfg.run.seed)
        progress: Progress | None = None
        if info.is_main and sys.stderr.isatty():

            def progress(it: Iterable[Any], desc: str) -> Iterable[Any]:
                return tqdm(it, desc=desc, leave=False)

        fit(cfg, info, resume=args.resume, progress=progress)
    except USER_ERRORS as exc:
        logger.error("%s", exc)
        return 2
    finally:
        cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

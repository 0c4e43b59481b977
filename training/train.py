"""Training CLI: ``python -m training.train configs/sysu.yaml optim.lr=0.05 data.root=/data/SYSU-MM01 [--resume]``.

Multi-GPU: ``torchrun --nproc_per_node=4 -m training.train configs/sysu.yaml`` (DDP; P x K per GPU). The run
directory ``run.out_dir/experiment`` receives ``config.yaml`` (the resolved config), ``checkpoint.pt`` (last
epoch), ``checkpoints/epoch_NNN.pt``, ``tb/`` (TensorBoard: losses, lr, evaluation metrics) and ``metrics.csv``
(the same per epoch, ``training.history``). On a terminal, a progress bar per epoch shows the running losses.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
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
from training.distributed import DistInfo, cleanup, init_distributed, mean_over_ranks, wait_for_main
from training.engine import build_optimizer, tensorboard_scalars, train_one_epoch
from training.eval_loop import evaluate_splits, format_metrics
from training.features import Progress
from training.history import METRICS_CSV, EpochCSV
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
    "run.eval_wait_minutes",
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


@dataclass
class TrainingRun:
    """What a run trains and checkpoints: the resolved config, the data, the network and its optimisation state."""

    cfg: ExperimentConfig
    dataset: VIReIDDataset
    net: VIReIDNet
    optimizer: Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    sampler: IdentitySampler
    train_set: PairedBatchDataset

    def state(self) -> dict[str, Any]:
        """The state dicts a checkpoint stores (``restore`` loads them back)."""
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
        }


def build_run(cfg: ExperimentConfig, info: DistInfo, pretrained: bool) -> TrainingRun:
    """Read the data set, build the network (ImageNet weights if ``pretrained`` and configured), optimiser, sampler."""
    dataset = build_dataset(cfg.data)
    cfg = with_num_classes(cfg, dataset.num_train_pids)
    net = VIReIDNet(cfg.model)
    if pretrained and cfg.run.pretrained is not None:
        load_pretrained(net, cfg.run.pretrained)
    net.to(info.device)
    optimizer = build_optimizer(net, cfg.optim)
    sampler = IdentitySampler(
        [s.pid for s in dataset.train_visible],
        [s.pid for s in dataset.train_infrared],
        cfg.sampler.num_ids,
        cfg.sampler.num_instances,
        cfg.run.seed,
        cfg.sampler.epoch,
        info.rank,
        info.world_size,
        cfg.sampler.with_replacement,
    )
    return TrainingRun(
        cfg=cfg,
        dataset=dataset,
        net=net,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule),
        scaler=torch.amp.GradScaler("cuda", enabled=cfg.run.amp and info.device.type == "cuda"),
        sampler=sampler,
        train_set=PairedBatchDataset(
            dataset.train_visible, dataset.train_infrared, sampler, build_train_transform(cfg.model, cfg.augment)
        ),
    )


def restore(run: TrainingRun, path: Path) -> int:
    """Load a checkpoint's state dicts and RNG state into ``run``; returns the number of epochs it had done.

    Raises:
        ResumeMismatchError: the checkpoint's config differs from ``run.cfg`` in a key that changes the training.
    """
    ckpt = load_checkpoint(path)
    check_resume_config(run.cfg, ckpt["config"])
    run.net.load_state_dict(ckpt["model"], strict=True)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.sampler.load_state_dict(ckpt["sampler"])
    set_rng_state(ckpt["rng"])
    done = int(ckpt["epoch"])
    logger.info("resumed %s after epoch %d", path, done)
    return done


def train_epoch(
    run: TrainingRun, model: nn.Module, epoch: int, info: DistInfo, progress: Progress | None
) -> tuple[dict[str, float], dict[str, float]]:
    """Train 0-based ``epoch`` and step the schedule; returns the epoch's learning rates and mean losses (all ranks)."""
    cfg = run.cfg
    run.train_set.set_epoch(epoch)
    loader = DataLoader(
        run.train_set,
        batch_size=None,
        shuffle=False,
        num_workers=cfg.data.workers,
        pin_memory=info.device.type == "cuda",
        generator=torch.Generator().manual_seed(epoch),
    )
    batches: Iterable[Any] = progress(loader, f"epoch {epoch + 1}/{cfg.schedule.epochs}") if progress else loader
    on_step = None
    if isinstance(batches, tqdm):  # the bar shows the running mean of each loss term
        bar = batches

        def on_step(running: dict[str, float]) -> None:
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)

    lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(run.optimizer.param_groups)}
    losses = train_one_epoch(
        model,
        batches,
        run.optimizer,
        run.scaler,
        cfg.loss,
        info.device,
        cfg.run.amp,
        cfg.run.max_iters,
        cfg.run.log_every,
        on_step,
    )
    losses = mean_over_ranks(losses, info)
    run.scheduler.step()
    return lrs, losses


def log_epoch(writer: Any, done: int, epochs: int, lrs: dict[str, float], losses: dict[str, float]) -> None:
    """Log the learning rates and losses of epoch ``done`` (1-based) and write them to TensorBoard."""
    logger.info(
        "epoch %d/%d lr %s loss %s",
        done,
        epochs,
        " ".join(f"{k} {v:.2e}" for k, v in lrs.items()),
        " ".join(f"{k} {v:.4f}" for k, v in losses.items()),
    )
    for key, value in {**tensorboard_scalars("train/loss", losses), **tensorboard_scalars("train/lr", lrs)}.items():
        writer.add_scalar(key, value, done)


def evaluate_and_log(
    run: TrainingRun, info: DistInfo, writer: Any, done: int, progress: Progress | None
) -> dict[str, dict[str, float]]:
    """Evaluate the network on the data set's splits after epoch ``done``; log and write the metrics."""
    cfg = run.cfg
    splits = run.dataset.eval_splits()
    results = evaluate_splits(run.net, splits, info.device, None, cfg.data.eval_batch_size, cfg.data.workers, progress)
    for group, metrics in results.items():
        logger.info("epoch %d eval %s: %s", done, group, format_metrics(metrics))
    for key, value in tensorboard_scalars("eval", results).items():
        writer.add_scalar(key, value, done)
    return results


def _evaluation_due(cfg: ExperimentConfig, done: int) -> bool:
    """Every ``run.eval_every`` epochs and after the last (never when it is 0)."""
    every = cfg.run.eval_every
    return bool(every) and (done % every == 0 or done == cfg.schedule.epochs)


def open_run_dir(cfg: ExperimentConfig) -> Any:
    """Write the resolved ``config.yaml`` into the run directory and open its TensorBoard writer."""
    save_config(cfg, cfg.run_dir / "config.yaml")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(cfg.run_dir / "tb"))


def fit(cfg: ExperimentConfig, info: DistInfo, resume: bool = False, progress: Progress | None = None) -> Path:
    """Train ``cfg`` from scratch or from the run directory's last checkpoint; returns the checkpoint path.

    Raises:
        RunExistsError: the run directory has a checkpoint and ``resume`` is False.
        ResumeMismatchError: resuming with a config that changes the training stream.
        training.data.base.DatasetLayoutError: the data set folder is missing or not in its layout.
        training.checkpoint.PretrainedWeightsNotFoundError: ``run.pretrained`` names a missing file.
    """
    last = cfg.run_dir / CHECKPOINT_NAME
    if last.exists() and not resume:
        raise RunExistsError(
            f"{last} exists; pass --resume to continue that run, or set another experiment name or run.out_dir"
        )
    resuming = resume and last.exists()
    run = build_run(cfg, info, pretrained=not resuming)
    cfg = run.cfg
    start_epoch = restore(run, last) if resuming else 0
    model: nn.Module = run.net
    if info.enabled:
        model = DistributedDataParallel(run.net, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    writer = open_run_dir(cfg) if info.is_main else None
    history = EpochCSV(cfg.run_dir / METRICS_CSV, keep_through=start_epoch)
    for epoch in range(start_epoch, cfg.schedule.epochs):
        lrs, losses = train_epoch(run, model, epoch, info, progress)
        done = epoch + 1
        if writer is not None:  # the main rank logs, evaluates and checkpoints
            log_epoch(writer, done, cfg.schedule.epochs, lrs, losses)
            # checkpoint first: an evaluation that fails must not lose the epoch
            save_checkpoint(cfg.run_dir, run.state(), cfg, done, cfg.run.keep_epoch_checkpoints)
            history.record(done, {**tensorboard_scalars("loss", losses), **tensorboard_scalars("lr", lrs)})
            if _evaluation_due(cfg, done):
                with torch.random.fork_rng(devices=[]):  # the checkpoint's RNG state stays the training stream's
                    results = evaluate_and_log(run, info, writer, done, progress)
                history.record(done, tensorboard_scalars("eval", results))
            writer.flush()
        wait_for_main(info)
    if writer is not None:
        writer.close()
    return last


def cli_progress(info: DistInfo) -> Progress | None:
    """tqdm progress bars on rank 0 when stderr is a terminal; none when it is a file or a pipe (CI logs), where
    the per-epoch log lines and ``metrics.csv`` report the same numbers without a line per refresh."""
    if not (info.is_main and sys.stderr.isatty()):
        return None

    def progress(it: Iterable[Any], desc: str) -> Iterable[Any]:
        return tqdm(it, desc=desc, leave=False, dynamic_ncols=True)

    return progress


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

    def train(info: DistInfo) -> None:
        seed_everything(cfg.run.seed)
        fit(cfg, info, resume=args.resume, progress=cli_progress(info))

    return run_distributed(cfg, train)


def run_distributed(cfg: ExperimentConfig, work: Callable[[DistInfo], None]) -> int:
    """Join DDP if launched by torchrun, run ``work``, leave; exit status 2 with one error line on a user error."""
    info = init_distributed(cfg.run.device, timedelta(minutes=cfg.run.eval_wait_minutes))
    try:
        work(info)
    except USER_ERRORS as exc:
        logger.error("%s", exc)
        return 2
    finally:
        cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Process-group set-up for ``torchrun`` DDP (NCCL on CUDA, gloo on CPU) and the single-process case.

``torchrun --nproc_per_node=N -m training.train CONFIG ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
whenever they are present a process group is created, at world size 1 too, so the DDP path is the same code that
runs in the CPU test. Without them (``python -m training.train``) the run is a plain single process.

Only rank 0 evaluates; the other ranks wait for it in ``wait_for_main``, a ``monitored_barrier`` on a side gloo
group whose timeout is ``run.eval_wait_minutes`` (default 4 h), not the default group's (NCCL: 10 min), so a long
evaluation is not mistaken for a hung rank, while the training collectives keep their short timeout.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

DEFAULT_WAIT = timedelta(hours=4)  # how long the other ranks wait for rank 0's evaluation and checkpoint


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank, its device and whether DDP is active."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    enabled: bool
    wait_group: Any = field(default=None, compare=False, repr=False)  # gloo group of ``wait_for_main``
    wait_timeout: timedelta = DEFAULT_WAIT

    @property
    def is_main(self) -> bool:
        """Rank 0: writes checkpoints, logs, TensorBoard and runs evaluation."""
        return self.rank == 0


def resolve_device(kind: Literal["auto", "cpu", "cuda"], local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("run.device=cuda but no CUDA device is available; set run.device=cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(kind: Literal["auto", "cpu", "cuda"], wait_timeout: timedelta = DEFAULT_WAIT) -> DistInfo:
    """Join the torchrun process group if the environment defines one, else describe a single process.

    Under torchrun it also creates the gloo group in which ``wait_for_main`` waits up to ``wait_timeout``.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(0, 1, 0, resolve_device(kind), enabled=False)
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(kind, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    logger.info("DDP rank %d/%d (local %d) on %s with %s", rank, world_size, local_rank, device, backend)
    return DistInfo(rank, world_size, local_rank, device, True, wait_group(wait_timeout), wait_timeout)


def wait_group(timeout: timedelta) -> Any:
    """A gloo group over all ranks whose operations time out after ``timeout`` (call on every rank)."""
    return dist.new_group(backend="gloo", timeout=timeout)


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wait_for_main(info: DistInfo) -> None:
    """Wait for every rank, up to ``info.wait_timeout``, while rank 0 evaluates and checkpoints (no-op alone).

    A ``monitored_barrier`` on the gloo side group: a rank that never arrives is named in the error, after the
    long timeout, instead of the default group's watchdog killing the job during a long evaluation.
    """
    if info.enabled:
        dist.monitored_barrier(group=info.wait_group, timeout=info.wait_timeout)


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average a dict of scalars over ranks (identity for a single process)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return {k: float(v) / info.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}

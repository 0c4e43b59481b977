"""Identity-balanced cross-modal batches (docs/method.md §4, after the AGW ``IdentitySampler``).

A batch is P identities x K visible + K infrared images, *row-aligned*: row i of the visible half and row i of
the infrared half share a pid (the DCL loss relies on it). The draws of epoch ``e`` come from a local generator
``np.random.default_rng([seed, e])``, so an epoch's batches are a pure function of ``(seed, e)``: resuming only
needs ``{seed, epoch}``, and DDP ranks agree on the epoch's batch list and take disjoint slices of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from common.preprocess import load_image
from training.data.base import Sample


@dataclass(frozen=True)
class PairedBatch:
    """Indices of one batch: ``vis[i]`` and ``ir[i]`` index images of the same ``pids[i]``; each ``(P*K,)``."""

    vis: np.ndarray
    ir: np.ndarray
    pids: np.ndarray


def _positions(pids: Sequence[int]) -> dict[int, np.ndarray]:
    """Map each pid to the sorted array of indices where it occurs."""
    arr = np.asarray(pids, dtype=np.int64)
    return {int(p): np.flatnonzero(arr == p) for p in np.unique(arr)}


class IdentitySampler:
    """Epoch-wise list of row-aligned cross-modal batches, sharded over DDP ranks.

    Args:
        vis_pids: training pid of each visible image (relabelled, shared with infrared).
        ir_pids: training pid of each infrared image.
        num_ids: P, identities per batch (per rank).
        num_instances: K, images per identity per modality.
        seed: base seed; epoch ``e`` draws from ``np.random.default_rng([seed, e])``.
        epoch_mode: ``"agw"``: ``max(#vis, #ir) // (P*K) + 1`` batches of P distinct random ids (the AGW epoch);
            ``"identities"``: one pass over the shuffled identities, ``#ids // P`` batches.
        rank, world_size: this process's DDP shard; rank r takes batches r, r+W, ... of the epoch's list,
            truncated so that every rank gets the same number.
        with_replacement: draw each id's K images with replacement, as the AGW ``IdentitySampler`` does
            (``np.random.choice(pos, K)``: a batch may repeat an image though the id has K or more); False draws
            without replacement when the id has at least K images (and with replacement otherwise).
    """

    def __init__(
        self,
        vis_pids: Sequence[int],
        ir_pids: Sequence[int],
        num_ids: int,
        num_instances: int,
        seed: int = 0,
        epoch_mode: Literal["agw", "identities"] = "agw",
        rank: int = 0,
        world_size: int = 1,
        with_replacement: bool = True,
    ) -> None:
        self.vis_pos = _positions(vis_pids)
        self.ir_pos = _positions(ir_pids)
        missing = sorted(set(self.vis_pos) ^ set(self.ir_pos))
        if missing:
            raise ValueError(f"pids {missing[:10]} have images in only one modality; each needs both")
        self.ids = np.array(sorted(self.vis_pos), dtype=np.int64)
        if len(self.ids) < num_ids:
            raise ValueError(f"{len(self.ids)} identities cannot fill a batch of {num_ids} distinct ids")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_ids = num_ids
        self.num_instances = num_instances
        self.seed = seed
        self.epoch_mode = epoch_mode
        self.rank = rank
        self.world_size = world_size
        self.with_replacement = with_replacement
        self.num_images = max(len(vis_pids), len(ir_pids))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``batches()`` returns."""
        self.epoch = epoch

    def _epoch_batches(self) -> int:
        """Number of batches in the whole epoch (all ranks together)."""
        if self.epoch_mode == "agw":
            return self.num_images // (self.num_ids * self.num_instances) + 1
        return len(self.ids) // self.num_ids

    def __len__(self) -> int:
        return self._epoch_batches() // self.world_size

    def _draw_ids(self, rng: np.random.Generator, n_batches: int) -> np.ndarray:
        """``(n_batches, P)`` pids: distinct within each batch."""
        if self.epoch_mode == "agw":
            return np.stack([rng.choice(self.ids, self.num_ids, replace=False) for _ in range(n_batches)])
        order = rng.permutation(self.ids)
        return order[: n_batches * self.num_ids].reshape(n_batches, self.num_ids)

    def _draw_images(self, rng: np.random.Generator, positions: np.ndarray) -> np.ndarray:
        """K indices of one id in one modality (see ``with_replacement``)."""
        replace = self.with_replacement or len(positions) < self.num_instances
        return rng.choice(positions, self.num_instances, replace=replace)

    def all_batches(self) -> list[PairedBatch]:
        """Every batch of the current epoch, before sharding (identical on all ranks)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        ids = self._draw_ids(rng, self._epoch_batches())
        batches = []
        for row in ids:
            vis, ir = [], []
            for pid in row:
                vis.append(self._draw_images(rng, self.vis_pos[int(pid)]))
                ir.append(self._draw_images(rng, self.ir_pos[int(pid)]))
            pids = np.repeat(row, self.num_instances)
            batches.append(PairedBatch(vis=np.concatenate(vis), ir=np.concatenate(ir), pids=pids))
        return batches

    def batches(self) -> list[PairedBatch]:
        """This rank's batches of the current epoch."""
        shard = self.all_batches()[self.rank :: self.world_size]
        return shard[: len(self)]

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs: the seed, the epoch and the layout (checked on load)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "num_ids": self.num_ids,
            "num_instances": self.num_instances,
            "epoch_mode": self.epoch_mode,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed and epoch; a different batch layout is an error (the stream would differ)."""
        for key in ("num_ids", "num_instances", "epoch_mode"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler {key} is {getattr(self, key)!r} but the checkpoint has {state[key]!r}")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])


def sample_seed(seed: int, epoch: int, batch: int, slot: int) -> int:
    """Seed of the augmentation of one image slot (a pure function of where it sits in the epoch)."""
    mixed = np.random.SeedSequence([seed, epoch, batch, slot]).generate_state(1, dtype=np.uint64)[0]
    return int(mixed & np.uint64(0x7FFF_FFFF_FFFF_FFFF))


class PairedBatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Map-style data set over this rank's batches of the sampler's current epoch.

    Item ``b`` is ``(vis, ir, pids)``: ``(P*K, 3, H, W)`` float tensors and ``(P*K,)`` int64. Use with
    ``DataLoader(ds, batch_size=None)``. Each image's augmentation runs under its own seed (``sample_seed``)
    in a forked torch RNG, so the batches are identical with any number of workers and after a resume.
    """

    def __init__(
        self,
        visible: Sequence[Sample],
        infrared: Sequence[Sample],
        sampler: IdentitySampler,
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        self.visible = list(visible)
        self.infrared = list(infrared)
        self.sampler = sampler
        self.transform = transform
        self._batches: list[PairedBatch] = []
        self._epoch = -1

    def set_epoch(self, epoch: int) -> None:
        """Move the sampler to ``epoch`` and materialise its batch list (call before iterating a loader)."""
        self.sampler.set_epoch(epoch)
        self._batches = self.sampler.batches()
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def _load(self, path: Any, seed: int) -> torch.Tensor:
        img = load_image(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(img)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._epoch != self.sampler.epoch:
            self.set_epoch(self.sampler.epoch)
        batch = self._batches[index]
        global_index = index * self.sampler.world_size + self.sampler.rank
        n = len(batch.pids)
        seeds = [sample_seed(self.sampler.seed, self._epoch, global_index, slot) for slot in range(2 * n)]
        vis = torch.stack([self._load(self.visible[i].path, seeds[j]) for j, i in enumerate(batch.vis)])
        ir = torch.stack([self._load(self.infrared[i].path, seeds[n + j]) for j, i in enumerate(batch.ir)])
        return vis, ir, torch.from_numpy(batch.pids.astype(np.int64))

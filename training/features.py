"""Embeddings of image files with ``VIReIDNet.embed``: the evaluation side of the one embedding definition.

Images go through ``training.transforms.eval_batch`` (``common.preprocess`` decode + bilinear resize, then
normalisation), i.e. exactly what the service feeds its ONNX graph, so evaluation measures the deployed model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.modality import Modality
from model.config import NetConfig
from model.net import VIReIDNet
from training.data.base import Sample
from training.transforms import eval_batch

Progress = Callable[[Iterable[torch.Tensor], str], Iterable[torch.Tensor]]


class EvalImages(Dataset[torch.Tensor]):
    """Normalised ``(3, H, W)`` evaluation tensors of a list of image files."""

    def __init__(self, paths: Sequence[Path], net_cfg: NetConfig) -> None:
        self.paths = list(paths)
        self.net_cfg = net_cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return eval_batch([self.paths[index]], self.net_cfg)[0]


@torch.no_grad()
def extract_embeddings(
    net: VIReIDNet, batches: Iterable[torch.Tensor], modality: Modality, device: torch.device, flip: bool | None
) -> np.ndarray:
    """Embed normalised ``(B, 3, H, W)`` batches of one modality; returns float32 ``(N, embedding_dim)``.

    Wrap ``batches`` in tqdm in a CLI: ``extract_embeddings(net, tqdm(loader, desc="gallery"), ...)``.
    """
    was_training = net.training
    net.eval()
    out = [net.embed(x.to(device, non_blocking=True), modality, flip=flip).float().cpu() for x in batches]
    net.train(was_training)
    if not out:
        return np.zeros((0, net.embedding_dim), dtype=np.float32)
    return torch.cat(out).numpy()


def embed_samples(
    net: VIReIDNet,
    samples: Sequence[Sample],
    device: torch.device,
    flip: bool | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Embeddings of ``samples`` (each through the stem of its own modality), rows in the order given."""
    feats = np.zeros((len(samples), net.embedding_dim), dtype=np.float32)
    for modality in Modality:
        rows = [i for i, s in enumerate(samples) if s.modality is modality]
        if not rows:
            continue
        loader = DataLoader(
            EvalImages([samples[i].path for i in rows], net.cfg),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )
        batches: Iterable[torch.Tensor] = progress(loader, f"embed {modality.value}") if progress else loader
        feats[rows] = extract_embeddings(net, batches, modality, device, flip)
    return feats


def distance_matrix(q_feats: np.ndarray, g_feats: np.ndarray) -> np.ndarray:
    """``distmat = 1 - q @ g.T`` for L2-normalised embeddings (cosine distance; smaller = closer)."""
    return 1.0 - q_feats @ g_feats.T

"""The evaluation loop: embed every image of the evaluation splits once, score each split, average the trials.

``training.metrics`` holds the protocols' CMC/mAP/mINP; ``training.evaluate`` is the evaluation CLI on a checkpoint;
``training.train`` runs this loop every ``run.eval_every`` epochs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch

from model.net import VIReIDNet
from training.data.base import EvalSplit, Sample
from training.features import Progress, distance_matrix, embed_samples
from training.metrics import split_metrics

logger = logging.getLogger(__name__)

RANKS = (1, 5, 10, 20)


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
def evaluate_splits(
    net: VIReIDNet,
    splits: Sequence[EvalSplit],
    device: torch.device,
    flip: bool | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
    embed: Callable[[Sequence[Sample]], np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Cross-modal retrieval metrics of ``net`` on evaluation splits, averaged over the trials of each setting.

    Each distinct image is embedded once (SYSU's 10 trials share their queries); distances are cosine distances
    of the embeddings; each split is scored by its protocol (``training.metrics.split_metrics``). ``embed``, when
    given, computes the embeddings instead of ``net`` (e.g. ``training.onnx_features.OnnxEmbedder.embed``).

    Returns:
        ``{"sysu/all": {"R1": ..., "R5": ..., "R10": ..., "R20": ..., "mAP": ..., "mINP": ...}, ...}`` fractions.
    """
    samples, rows = _unique_samples(splits)
    if embed is not None:
        feats = embed(samples)
    else:
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

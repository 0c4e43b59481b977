"""The evaluation loop: embed every image of the evaluation splits once, score each split, average the trials.

``training.metrics`` holds the protocols' CMC/mAP/mINP; ``training.evaluate`` is the evaluation CLI on a checkpoint;
``training.train`` runs this loop every ``run.eval_every`` epochs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from index.fusion import fuse_embeddings
from index.kreciprocal import KReciprocalParams, rerank_distmat
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
    distances: list[tuple[EvalSplit, np.ndarray]] | None = None,
) -> dict[str, dict[str, float]]:
    """Cross-modal retrieval metrics of ``net`` on evaluation splits, averaged over the trials of each setting.

    Each distinct image is embedded once (SYSU's 10 trials share their queries); distances are cosine distances
    of the embeddings; each split is scored by its protocol (``training.metrics.split_metrics``). A ``distances``
    list receives each split with its ``(num_q, num_g)`` distance matrix (for plots).

    Returns:
        ``{"sysu/all": {"R1": ..., "R5": ..., "R10": ..., "R20": ..., "mAP": ..., "mINP": ...}, ...}`` fractions.
    """
    features = embed_splits(splits, lambda s: embed_samples(net, s, device, flip, batch_size, workers, progress))
    return score_splits(features, splits, distances=distances)


@dataclass(frozen=True)
class SplitFeatures:
    """Embeddings ``(n, dim)`` of every distinct image of some splits, with the row of each (path, modality)."""

    feats: np.ndarray
    rows: dict[tuple[str, str], int]

    def of(self, samples: Sequence[Sample]) -> np.ndarray:
        """Embeddings of ``samples``, in order."""
        return self.feats[[self.rows[(str(s.path), s.modality.value)] for s in samples]]


@dataclass(frozen=True)
class Scoring:
    """How queries are ranked: ``tracklet`` images per query (fused), k-reciprocal re-ranking or cosine distance."""

    tracklet: int = 1
    rerank: KReciprocalParams | None = None
    rerank_candidates: int = 100

    def __post_init__(self) -> None:
        if self.tracklet < 1 or self.rerank_candidates < 1:
            raise ValueError(
                f"tracklet and rerank candidates must be at least 1, got {self.tracklet} and {self.rerank_candidates}"
            )


def embed_splits(splits: Sequence[EvalSplit], embed: Callable[[list[Sample]], np.ndarray]) -> SplitFeatures:
    """Embed each distinct image of ``splits`` once with ``embed`` (SYSU's 10 trials share their queries)."""
    samples, rows = _unique_samples(splits)
    return SplitFeatures(embed(samples), rows)


def tracklets(query: Sequence[Sample], size: int) -> list[list[int]]:
    """Per query image, the query rows of its tracklet: itself and the next ``size - 1`` of its identity and camera.

    The images of one (identity, camera) are taken in query order, wrapping around; a pair with fewer than ``size``
    images gives all of them. ``size = 1`` is the single-image protocol.
    """
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, s in enumerate(query):
        groups[(s.pid, s.camid)].append(i)
    out = []
    for i, s in enumerate(query):
        group = groups[(s.pid, s.camid)]
        start = group.index(i)
        out.append([group[(start + j) % len(group)] for j in range(min(size, len(group)))])
    return out


def query_features(feats: np.ndarray, members: list[list[int]]) -> np.ndarray:
    """One fused query per tracklet (``index.fusion``: mean of the normalised embeddings, renormalised)."""
    return np.vstack([fuse_embeddings(feats[rows]) for rows in members])


def score_splits(
    features: SplitFeatures,
    splits: Sequence[EvalSplit],
    scoring: Scoring | None = None,
    distances: list[tuple[EvalSplit, np.ndarray]] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every split from precomputed embeddings, averaged over the trials of each setting.

    A ``distances`` list receives each split with its ``(num_q, num_g)`` distance matrix (for plots).
    """
    how = scoring or Scoring()
    per_group: dict[str, list[dict[str, float]]] = defaultdict(list)
    for split in splits:
        q = features.of(split.query)
        if how.tracklet > 1:
            q = query_features(q, tracklets(split.query, how.tracklet))
        g = features.of(split.gallery)
        if how.rerank is None:
            distmat = distance_matrix(q, g)
        else:
            distmat = rerank_distmat(q, g, how.rerank, how.rerank_candidates)
        if distances is not None:
            distances.append((split, distmat))
        cmc, mAP, mINP = split_metrics(distmat, split)
        per_group[split.group].append(metrics_dict(cmc, mAP, mINP))
    results = {}
    for group, trials in per_group.items():
        results[group] = {k: float(np.mean([t[k] for t in trials])) for k in trials[0]}
        logger.info("%s (%d trials): %s", group, len(trials), format_metrics(results[group]))
    return results


def format_metrics(metrics: dict[str, float]) -> str:
    """``R1 45.20 R5 ... mAP 40.10 mINP 25.00`` in percent."""
    return " ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())

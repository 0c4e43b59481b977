"""A compact embedding: a linear projection fitted on the training identities' embeddings, baked into the graph.

``fit_pca`` centres the (L2-normalised) embeddings of training images and keeps the top ``dim`` principal axes;
the exported graph computes ``normalize((embed(x) - mean) @ components)`` (a MatMul before the final L2
normalisation). Plain PCA is the default: whitening (dividing each axis by its standard deviation) gives the
low-variance axes, mostly noise on unseen identities, the same weight as the discriminative ones, and lost
accuracy on the synthetic set (docs/method.md, "Compact embedding").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from model.net import VIReIDNet
from training.data.base import Sample
from training.features import embed_samples

DEFAULT_PROJECTION_IMAGES = 4000


@dataclass(frozen=True)
class Projection:
    """``y = (x - mean) @ components``: ``mean`` is ``(D,)``, ``components`` is ``(D, dim)``, float32."""

    mean: np.ndarray
    components: np.ndarray
    whiten: bool

    @property
    def dim(self) -> int:
        """Output dimension."""
        return int(self.components.shape[1])

    @property
    def name(self) -> str:
        """What the model card records, e.g. ``pca 1024->256``."""
        kind = "pca-whiten" if self.whiten else "pca"
        return f"{kind} {self.components.shape[0]}->{self.dim}"


def fit_pca(feats: np.ndarray, dim: int, whiten: bool = False) -> Projection:
    """Top-``dim`` principal axes of ``(N, D)`` features (centred; scaled to unit variance when ``whiten``).

    Raises:
        ValueError: ``dim`` exceeds ``D`` or ``N``.
    """
    n, d = feats.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(f"embedding dim {dim} must be between 1 and min(images={n}, network dim={d})")
    x = feats.astype(np.float64)
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:dim].T
    if whiten:
        components = components / np.sqrt(singular[:dim] ** 2 / max(n - 1, 1) + 1e-12)
    return Projection(mean.astype(np.float32), components.astype(np.float32), whiten)


def training_features(
    net: VIReIDNet,
    samples: Sequence[Sample],
    limit: int = DEFAULT_PROJECTION_IMAGES,
    flip: bool | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Embeddings of at most ``limit`` training samples drawn at random (``flip`` as in ``VIReIDNet.embed``)."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(samples), size=min(limit, len(samples)), replace=False).tolist())
    return embed_samples(net, [samples[i] for i in chosen], torch.device("cpu"), flip)


class ProjectionLayer(nn.Module):
    """``normalize((x - mean) @ components)`` on a batch of embeddings, as one MatMul in the exported graph."""

    def __init__(self, projection: Projection) -> None:
        super().__init__()
        self.mean: Tensor
        self.components: Tensor
        self.register_buffer("mean", torch.from_numpy(projection.mean).view(1, -1), persistent=False)
        self.register_buffer("components", torch.from_numpy(projection.components), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Project ``(N, D)`` embeddings to L2-normalised ``(N, dim)``."""
        return nn.functional.normalize((x - self.mean) @ self.components, dim=1)

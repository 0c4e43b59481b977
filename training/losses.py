"""The three training losses of docs/method.md §3: identity (ID), batch-hard triplet, distribution consistency (DCL).

The network's ``TrainOutput`` holds S streams of N rows each, in the order ``[V, V_aux, I, I_aux]`` (``[V, I]``
without AMG); row i of every stream has identity ``pids[i]`` (the sampler's row alignment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import LossConfig

if TYPE_CHECKING:
    from model.net import TrainOutput

# Stream pairs whose union the triplet loss mines over (docs/method.md §3).
TRIPLET_PAIRS_AMG: tuple[tuple[str, str], ...] = (("V", "I"), ("V", "I_aux"), ("V_aux", "I"), ("V_aux", "I_aux"))
TRIPLET_PAIRS_PLAIN: tuple[tuple[str, str], ...] = (("V", "I"),)


def id_loss(logits: list[Tensor], targets: Tensor, label_smoothing: float = 0.1) -> Tensor:
    """Cross-entropy with label smoothing, averaged over the stripe classifiers.

    Args:
        logits: one ``(M, num_classes)`` tensor per stripe.
        targets: ``(M,)`` class indices.
    """
    losses = [F.cross_entropy(s.float(), targets, label_smoothing=label_smoothing) for s in logits]
    return torch.stack(losses).mean()


def pairwise_euclidean(x: Tensor) -> Tensor:
    """``(M, M)`` Euclidean distances between the rows of ``(M, D)`` ``x`` (clamped at 1e-12 before the root)."""
    sq = x.pow(2).sum(dim=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * (x @ x.t())
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(feats: Tensor, pids: Tensor, margin: float = 0.3) -> Tensor:
    """Batch-hard triplet loss: mean over anchors of ``max(0, d(a, hardest p) - d(a, hardest n) + margin)``.

    The hardest positive is the farthest same-pid row (the anchor itself counts, at distance ~0), the hardest
    negative the closest other-pid row, as in the AGW ``TripletLoss``.
    """
    dist = pairwise_euclidean(feats.float())
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    hardest_pos = dist.masked_fill(~same, float("-inf")).max(dim=1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def cross_modal_triplet(
    streams: dict[str, Tensor], pids: Tensor, pairs: tuple[tuple[str, str], ...], margin: float
) -> Tensor:
    """Batch-hard triplet over the union of each named stream pair (rows share ``pids``), averaged over pairs."""
    labels = torch.cat([pids, pids])
    losses = [batch_hard_triplet(torch.cat([streams[a], streams[b]]), labels, margin) for a, b in pairs]
    return torch.stack(losses).mean()


def dcl_loss(vis_aux: Tensor, ir_aux: Tensor) -> Tensor:
    """Mean over rows of the L2 distance ``||f(V_aux_i) - f(I_aux_i)||_2`` of the projection-head outputs."""
    return (vis_aux.float() - ir_aux.float()).norm(dim=1).mean()


def compute_losses(out: TrainOutput, pids: Tensor, cfg: LossConfig) -> dict[str, Tensor]:
    """Weighted ID + triplet + DCL losses of one training batch.

    Args:
        out: the network's training output (S streams of N rows; S = 4 with AMG, 2 without).
        pids: ``(N,)`` identities of the rows (shared by all streams).
        cfg: loss weights and parameters.

    Returns:
        ``{"id", "triplet", "dcl", "total"}`` scalars (unweighted terms; ``total`` is the weighted sum; ``dcl`` is
        0 without AMG).
    """
    num_streams = len(out.streams)
    ident = id_loss(out.logits, pids.repeat(num_streams), cfg.label_smoothing)
    feats = {name: out.feats[out.rows(name)] for name in out.streams}
    pairs = TRIPLET_PAIRS_AMG if "V_aux" in out.streams else TRIPLET_PAIRS_PLAIN
    triplet = cross_modal_triplet(feats, pids, pairs, cfg.margin)
    if out.dcl is not None:
        dcl = dcl_loss(out.dcl[out.dcl_rows("V_aux")], out.dcl[out.dcl_rows("I_aux")])
    else:
        dcl = torch.zeros((), device=pids.device)
    total = cfg.id_weight * ident + cfg.triplet_weight * triplet + cfg.dcl_weight * dcl
    return {"id": ident, "triplet": triplet, "dcl": dcl, "total": total}

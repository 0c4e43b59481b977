"""The two-stream VI-ReID network of docs/method.md §2 and the one definition of the embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.modality import Modality
from model.backbone import TwoStreamResNet
from model.config import NetConfig
from model.layers.amg import AuxiliaryModalityGenerator
from model.layers.bnneck import BNNeck
from model.layers.dcl_head import DCLHead
from model.layers.gem import StripeGeM

STREAMS_AMG = ("V", "V_aux", "I", "I_aux")
STREAMS_PLAIN = ("V", "I")
DCL_STREAMS = ("V_aux", "I_aux")  # the only rows the DCL head sees (docs/method.md §3)


@dataclass
class TrainOutput:
    """Outputs of the training graph for a batch of ``N`` row-aligned (visible, infrared) pairs.

    Rows are stacked by stream in the order of ``streams``: rows ``[k*N, (k+1)*N)`` belong to ``streams[k]``.

    Attributes:
        streams: ``("V", "V_aux", "I", "I_aux")``, or ``("V", "I")`` without AMG.
        logits: one ``(S*N, num_classes)`` tensor per stripe.
        feats: ``(S*N, P*D)`` concatenated pre-BN stripe vectors (D = ``part_dim`` or the backbone width).
        dcl: ``(2*N, dcl_dim)`` projection-head outputs (unit vectors) of the auxiliary streams only, rows
            ``[V_aux, I_aux]`` (see ``dcl_rows``); None without AMG.
    """

    streams: tuple[str, ...]
    logits: list[Tensor]
    feats: Tensor
    dcl: Tensor | None

    @property
    def batch_size(self) -> int:
        """``N``: rows per stream."""
        return int(self.feats.shape[0]) // len(self.streams)

    def rows(self, stream: str) -> slice:
        """Row slice of ``stream`` (e.g. ``"V_aux"``) in ``feats``, ``logits`` and ``dcl``.

        Raises:
            KeyError: ``stream`` is not one of ``streams``.
        """
        if stream not in self.streams:
            raise KeyError(f"stream {stream!r} not in this output; streams are {self.streams}")
        k = self.streams.index(stream)
        return slice(k * self.batch_size, (k + 1) * self.batch_size)

    def dcl_rows(self, stream: str) -> slice:
        """Row slice of ``stream`` (``"V_aux"`` or ``"I_aux"``) in ``dcl``.

        Raises:
            KeyError: ``stream`` is not an auxiliary stream of this output.
        """
        if stream not in DCL_STREAMS or stream not in self.streams:
            raise KeyError(f"the DCL head sees only {DCL_STREAMS}, not {stream!r}")
        k = DCL_STREAMS.index(stream)
        return slice(k * self.batch_size, (k + 1) * self.batch_size)


@dataclass
class HeadOutput:
    """Per-stripe outputs of the head for ``N`` images.

    Attributes:
        feats: ``(N, P, D)`` pre-BN stripe vectors.
        bn_feats: ``(N, P, D)`` post-BN stripe vectors (what the embedding is made of).
        logits: one ``(N, num_classes)`` tensor per stripe; empty when the head ran with ``pre_logits=True``.
    """

    feats: Tensor
    bn_feats: Tensor
    logits: list[Tensor]


class VIReIDNet(nn.Module):
    """AMG + two-stream ResNet (+ HAGL) + GeM stripes with BNNeck classifiers + DCL projection head.

    Ablations via ``cfg``: ``amg=False`` drops the auxiliary streams and the DCL head; ``hagl=False`` drops HAGL;
    both off is the baseline. The module never touches files, the network or the environment.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.amg = AuxiliaryModalityGenerator() if cfg.amg else None
        self.backbone = TwoStreamResNet(cfg.arch, cfg.specific_stages, cfg.last_stride, cfg.hagl)
        channels = self.backbone.out_channels
        self.pool = StripeGeM(cfg.num_stripes, cfg.gem_p, cfg.gem_learnable)
        self.stripe_dim: int = cfg.part_dim or channels
        self.reductions = nn.ModuleList(
            [nn.Linear(channels, cfg.part_dim, bias=False) for _ in range(cfg.num_stripes)] if cfg.part_dim else []
        )
        self.necks = nn.ModuleList([BNNeck(self.stripe_dim, cfg.num_classes) for _ in range(cfg.num_stripes)])
        self.dcl_head = (
            DCLHead(self.stripe_dim, cfg.dcl_dim, seed=cfg.dcl_seed, trainable=cfg.dcl_head_trainable)
            if cfg.amg
            else None
        )

    @property
    def embedding_dim(self) -> int:
        """Length of an embedding: ``num_stripes * (part_dim or backbone width)``."""
        return self.cfg.num_stripes * self.stripe_dim

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the training streams, in batch order."""
        return STREAMS_AMG if self.amg is not None else STREAMS_PLAIN

    def forward_features(self, x: Tensor, modality: Modality) -> Tensor:
        """``(N, 3, H, W)`` normalised images of ``modality`` -> ``(N, C, h, w)`` layer4 feature map."""
        out: Tensor = self.backbone(x, modality)
        return out

    def forward_head(self, fmap: Tensor, pre_logits: bool = False) -> HeadOutput:
        """Pool stripes, reduce (``part_dim``), BNNeck and (unless ``pre_logits``) classify a layer4 map."""
        pooled: Tensor = self.pool(fmap)
        feats: list[Tensor] = []
        bn_feats: list[Tensor] = []
        logits: list[Tensor] = []
        for i, neck in enumerate(self.necks):
            feat: Tensor = self.reductions[i](pooled[:, i]) if len(self.reductions) else pooled[:, i]
            bn_feat, stripe_logits = neck(feat, with_logits=not pre_logits)
            feats.append(feat)
            bn_feats.append(bn_feat)
            if stripe_logits is not None:
                logits.append(stripe_logits)
        return HeadOutput(torch.stack(feats, dim=1), torch.stack(bn_feats, dim=1), logits)

    def forward(self, vis: Tensor, ir: Tensor) -> TrainOutput:
        """The training graph on row-aligned batches.

        Args:
            vis: ``(N, 3, H, W)`` ImageNet-normalised visible images.
            ir: ``(N, 3, H, W)`` ImageNet-normalised infrared images; row i shares its identity with ``vis[i]``.

        Returns:
            A :class:`TrainOutput` over the streams ``[V, V_aux, I, I_aux]`` (``[V, I]`` without AMG).
        """
        if vis.shape != ir.shape:
            raise ValueError(f"vis and ir batches must have one shape, got {tuple(vis.shape)} and {tuple(ir.shape)}")
        if self.amg is not None:
            vis = torch.cat([vis, self.amg(vis, Modality.VISIBLE)])
            ir = torch.cat([ir, self.amg(ir, Modality.INFRARED)])
        stems = torch.cat(
            [self.backbone.forward_stem(vis, Modality.VISIBLE), self.backbone.forward_stem(ir, Modality.INFRARED)]
        )
        head = self.forward_head(self.backbone.forward_shared(stems))
        feats = head.feats.flatten(1)
        out = TrainOutput(streams=self.streams, logits=head.logits, feats=feats, dcl=None)
        if self.dcl_head is not None:
            # Only the auxiliary rows: the head's batch-statistics BatchNorm must not mix in V and I rows, and the
            # DCL gradient must not reach the V and I features (the public MMN code feeds its DCL V_aux and I_aux).
            aux = torch.cat([feats[out.rows(s)] for s in DCL_STREAMS]).unflatten(1, head.feats.shape[1:])
            out.dcl = self.dcl_head(aux.mean(dim=1))
        return out

    def _embed_unnormalised(self, x: Tensor, modality: Modality) -> Tensor:
        """Concatenated post-BN stripe vectors ``(N, embedding_dim)`` before L2 normalisation."""
        return self.forward_head(self.forward_features(x, modality), pre_logits=True).bn_feats.flatten(1)

    def embed(self, x: Tensor, modality: Modality, flip: bool | None = None) -> Tensor:
        """THE embedding (eval, export, service): concatenated post-BN stripe vectors, L2-normalised.

        Call in eval mode (BatchNorm running statistics); the graph has no data-dependent shapes, so it traces and
        exports to ONNX with a dynamic batch axis.

        Args:
            x: ``(N, 3, H, W)`` ImageNet-normalised images of ``modality``.
            modality: selects the modality-specific stem.
            flip: average the features of the image and its horizontal mirror before normalising;
                None takes ``cfg.flip_embed``.

        Returns:
            ``(N, embedding_dim)`` unit vectors.
        """
        flip = self.cfg.flip_embed if flip is None else flip
        feats = self._embed_unnormalised(x, modality)
        if flip:
            feats = (feats + self._embed_unnormalised(torch.flip(x, dims=[3]), modality)) / 2
        return F.normalize(feats, dim=1)

    def backbone_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes (of ``named_parameters()``) of the layers ImageNet weights initialise."""
        return tuple(f"backbone.{p}" for p in self.backbone.pretrained_prefixes())

    def param_groups(self, lr: float, backbone_lr_mult: float = 0.1) -> list[dict[str, Any]]:
        """Optimiser parameter groups: the pretrained backbone at ``lr * backbone_lr_mult``, new modules at ``lr``.

        Only parameters with ``requires_grad`` are included (not the fixed DCL head or the frozen BNNeck biases).
        Each group carries ``name`` (``"backbone"``/``"new"``) and ``lr_mult`` so a scheduler can set
        ``group["lr"] = base_lr * group["lr_mult"]``.
        """
        prefixes = self.backbone_prefixes()
        backbone: list[nn.Parameter] = []
        new: list[nn.Parameter] = []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (backbone if name.startswith(prefixes) else new).append(param)
        return [
            {"name": "backbone", "params": backbone, "lr": lr * backbone_lr_mult, "lr_mult": backbone_lr_mult},
            {"name": "new", "params": new, "lr": lr, "lr_mult": 1.0},
        ]

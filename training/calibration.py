"""Fit the same-person calibration of a network on cross-modal pairs of held-out identities (at export time).

Every infrared image of the calibration identities is scored against every visible image of them with the embedding
the ONNX graphs compute (``VIReIDNet.embed``, same flip setting); same-identity pairs are the positives, the rest
the negatives, and ``common.calibration.fit_calibration`` fits the monotone map and the false-accept tail. The
identities are never trained or tested on: ``exp/calib_id.txt`` (the synthetic set writes one), or the val ids of
a model trained with ``data.hold_out_val=true`` (``training.data.sysu.calibration_ids`` refuses any overlap).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from common.calibration import ScoreCalibration, fit_calibration
from model.net import VIReIDNet
from training.config import DataConfig
from training.data.base import Sample
from training.data.sysu import calibration_ids, identity_samples
from training.features import Progress, embed_samples

logger = logging.getLogger(__name__)

REPORT_FAR = 0.01  # the false-accept rate whose threshold the export log reports


def cross_modal_pair_scores(
    ir_feats: np.ndarray, ir_pids: np.ndarray, vis_feats: np.ndarray, vis_pids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (inner products) of every infrared-visible pair: ``(same-identity scores, different-identity scores)``."""
    scores = ir_feats @ vis_feats.T
    same = np.asarray(ir_pids)[:, None] == np.asarray(vis_pids)[None, :]
    return scores[same], scores[~same]


def embedded_pairs(
    net: VIReIDNet,
    visible: Sequence[Sample],
    infrared: Sequence[Sample],
    device: torch.device,
    flip: bool | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Embed both modalities' samples and score them cross-modally: positives, negatives, identities in both."""
    vis = embed_samples(net, visible, device, flip, batch_size, progress=progress)
    ir = embed_samples(net, infrared, device, flip, batch_size, progress=progress)
    vis_pids, ir_pids = np.array([s.pid for s in visible]), np.array([s.pid for s in infrared])
    pos, neg = cross_modal_pair_scores(ir, ir_pids, vis, vis_pids)
    return pos, neg, len(set(vis_pids.tolist()) & set(ir_pids.tolist()))


def fit_score_calibration(
    net: VIReIDNet,
    data_cfg: DataConfig,
    root: Path,
    device: torch.device | None = None,
    flip: bool | None = None,
    progress: Progress | None = None,
) -> ScoreCalibration:
    """The calibration of ``net`` on the held-out identities of the SYSU-MM01-layout set at ``root``.

    Args:
        data_cfg: the checkpoint's data config (``hold_out_val`` says whether the val ids were trained on).
        flip: the flip setting the encoders are exported with.

    Raises:
        ValueError: the config's data set is not SYSU-MM01-layout.
        DatasetLayoutError: no calibration identities, or they overlap the train/val/test ids.
    """
    if data_cfg.name != "sysu_mm01":
        raise ValueError(
            f"score calibration reads a SYSU-MM01-layout set with held-out identities; {data_cfg.name} has none"
        )
    ids = calibration_ids(root, data_cfg.hold_out_val)
    visible, infrared = identity_samples(root, ids)
    device = device or torch.device("cpu")
    pos, neg, identities = embedded_pairs(net, visible, infrared, device, flip, data_cfg.eval_batch_size, progress)
    calibration = fit_calibration(pos, neg, identities)
    logger.info(
        "score calibration on %d held-out identities (%d visible, %d infrared images): %d same-identity and %d "
        "different-identity cross-modal pairs; threshold at FAR %g: %.4f",
        identities,
        len(visible),
        len(infrared),
        calibration.positives,
        calibration.negatives,
        REPORT_FAR,
        calibration.threshold(REPORT_FAR),
    )
    return calibration

"""Reliability of the exported same-person calibration on the test identities: a diagram, a table, FAR and TAR.

Usage::

    python -m training.calibration_report --checkpoint runs/tiny/checkpoint.pt --model-dir models \\
        --out reliability.png [--data ROOT] [--far 0.01] [--bins 10]

Every infrared image of the test identities is scored against every visible one with the checkpoint's embedding
(the function the model directory's encoders compute); the calibration stored in the model directory's card (fitted
at export on other identities) gives each pair a predicted probability. Pairs are binned by that probability; each
bin's observed fraction of same-identity pairs against its mean prediction is the reliability diagram (the
diagonal is perfect calibration). The threshold of ``--far`` is applied to the test pairs to measure the
false-accept and true-accept rates it really gives. Prints a Markdown table; writes the PNG to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.calibration import ScoreCalibration
from common.modality import Modality
from common.model_card import ModelCard, encoder_filename
from training.calibration import embedded_pairs
from training.data.layout import read_id_file
from training.data.sysu import id_file, identity_samples

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReliabilityBin:
    """Pairs whose predicted probability fell in ``[lo, hi)`` (the last bin includes 1)."""

    lo: float
    hi: float
    pairs: int
    predicted: float  # mean predicted probability (nan when empty)
    observed: float  # fraction of same-identity pairs (nan when empty)


@dataclass(frozen=True)
class CalibrationReport:
    """Reliability bins, summary errors, and the threshold's measured rates on held-out test pairs."""

    bins: list[ReliabilityBin]
    ece: float  # expected calibration error: pair-weighted mean |observed - predicted| over bins
    brier: float  # mean squared error of the predicted probabilities
    base_rate: float  # fraction of same-identity pairs among the test pairs
    far: float  # the requested false-accept rate
    threshold: float
    measured_far: float
    measured_tar: float
    positives: int
    negatives: int


def reliability(
    calibration: ScoreCalibration, positives: np.ndarray, negatives: np.ndarray, far: float, bins: int = 10
) -> CalibrationReport:
    """Bin the pairs by predicted probability and measure the ``far`` threshold on them."""
    scores = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
    predicted = calibration.p_same(scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(predicted, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        pred = float(predicted[members].mean()) if n else float("nan")
        obs = float(labels[members].mean()) if n else float("nan")
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n, pred, obs))
    ece = sum(b.pairs * abs(b.observed - b.predicted) for b in out if b.pairs) / scores.size
    threshold = calibration.threshold(far)
    return CalibrationReport(
        bins=out,
        ece=float(ece),
        brier=float(np.mean((predicted - labels) ** 2)),
        base_rate=float(labels.mean()),
        far=far,
        threshold=threshold,
        measured_far=float(np.mean(negatives >= threshold)),
        measured_tar=float(np.mean(positives >= threshold)),
        positives=int(positives.size),
        negatives=int(negatives.size),
    )


def markdown(report: CalibrationReport, calibration: ScoreCalibration) -> str:
    """The report as Markdown: the reliability table, then the summary lines."""
    lines = ["| predicted p_same | pairs | mean predicted | observed same-person |", "|---|---|---|---|"]
    for b in report.bins:
        cells = (f"{b.predicted:.3f}", f"{b.observed:.3f}") if b.pairs else ("-", "-")
        lines.append(f"| {b.lo:.1f}–{b.hi:.1f} | {b.pairs} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        f"Test pairs: {report.positives} same-identity, {report.negatives} different-identity (base rate "
        f"{report.base_rate:.4f}; calibration: {calibration.positives} and {calibration.negatives} pairs of "
        f"{calibration.identities} identities, base rate {calibration.base_rate:.4f}).",
        f"Expected calibration error {report.ece:.4f}; Brier score {report.brier:.4f}.",
        f"Threshold at FAR {report.far:g}: score >= {report.threshold:.4f}; measured on the test pairs: "
        f"FAR {report.measured_far:.4f}, TAR {report.measured_tar:.4f}.",
    ]
    return "\n".join(lines)


def plot(report: CalibrationReport, out: Path, title: str) -> None:
    """Write the reliability diagram (observed vs predicted per bin, with the diagonal) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    filled = [b for b in report.bins if b.pairs]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6.2), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.plot([b.predicted for b in filled], [b.observed for b in filled], "o-", color="C0", label="test pairs")
    ax.set_ylabel("observed fraction same person")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    centres = [(b.lo + b.hi) / 2 for b in report.bins]
    hist.bar(centres, [max(b.pairs, 0) for b in report.bins], width=0.09, color="C0")
    hist.set_yscale("log")
    hist.set_xlabel("predicted p_same")
    hist.set_ylabel("pairs")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def read_calibration(model_dir: Path) -> tuple[ModelCard, ScoreCalibration]:
    """The visible encoder's card and its calibration.

    Raises:
        SystemExit: the card carries no calibration (export with ``--score-calibration``).
    """
    import onnx

    path = model_dir / encoder_filename(Modality.VISIBLE)
    proto = onnx.load(str(path), load_external_data=False)
    card = ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})
    if card.calibration is None:
        raise SystemExit(f"{path} carries no score calibration; export with --score-calibration ROOT")
    return card, card.calibration


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.calibration_report", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint the model dir was exported from")
    parser.add_argument("--model-dir", type=Path, required=True, help="exported encoders with a calibration")
    parser.add_argument("--out", type=Path, required=True, help="PNG of the reliability diagram")
    parser.add_argument("--data", type=Path, help="SYSU-MM01-layout root (default: the checkpoint's data.root)")
    parser.add_argument("--far", type=float, default=0.01, help="false-accept rate of the threshold to measure")
    parser.add_argument("--bins", type=int, default=10)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print the Markdown report, write the PNG."""
    from training.checkpoint import checkpoint_hash, load_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    card, calibration = read_calibration(args.model_dir)
    if card.model_version != checkpoint_hash(args.checkpoint):
        raise SystemExit(f"{args.model_dir} was exported from another checkpoint (model {card.model_version})")
    net, cfg = load_model(args.checkpoint)
    root = args.data or cfg.data.root
    test_ids = read_id_file(id_file(root, "test"))
    visible, infrared = identity_samples(root, test_ids)
    pos, neg, identities = embedded_pairs(net, visible, infrared, torch.device("cpu"), None, cfg.data.eval_batch_size)
    report = reliability(calibration, pos, neg, args.far, args.bins)
    title = f"{cfg.experiment}: {identities} test identities, {pos.size + neg.size} cross-modal pairs"
    plot(report, args.out, title)
    sys.stdout.write(markdown(report, calibration) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()

"""ONNX export of the embedding, one graph per modality, with ModelCard metadata and a parity check.

Usage: ``python -m training.export --checkpoint runs/tiny/checkpoint.pt --out models/``

Each graph computes ``VIReIDNet.embed`` from float32 RGB images in [0, 1] (normalisation inside the graph), with a
dynamic batch axis. The export is checked with ``onnx.checker`` and against PyTorch (batch 1 and an odd batch);
a difference above ``atol`` raises ``ExportParityError`` and leaves no file behind.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from common.calibration import ScoreCalibration
from common.fsio import atomic_write
from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ModelCard, encoder_filename
from common.providers import CPU_PROVIDER
from model.net import VIReIDNet

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
PARITY_BATCHES = (1, 5)
# Loggers of the graph passes torch.onnx.export runs (dynamo exporter): INFO per node and initializer.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


class ExportParityError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch embedding within tolerance."""


class EncoderGraph(nn.Module):
    """``images in [0, 1] -> embed(normalise(images), modality)``: the function each ONNX file computes."""

    def __init__(self, net: VIReIDNet, modality: Modality, flip: bool | None = None) -> None:
        super().__init__()
        self.net = net
        self.modality = modality
        self.flip = flip
        cfg = net.cfg
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """Embed a ``(N, 3, H, W)`` batch of [0, 1] images."""
        return self.net.embed((images - self.mean) / self.std, self.modality, flip=self.flip)


def code_version() -> str:
    """Package version plus the git commit of the working tree (``.dirty`` appended when it has changes)."""
    try:
        pkg = version("vireid")
    except PackageNotFoundError:
        pkg = "0+unknown"
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
        return f"{pkg}+g{sha}" + (".dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return pkg


def build_card(
    net: VIReIDNet,
    modality: Modality,
    model_version: str,
    experiment: str,
    git_sha: str,
    calibration: ScoreCalibration | None = None,
) -> ModelCard:
    """The ModelCard describing the graph exported for ``modality`` (with the same-person calibration, if any)."""
    cfg = net.cfg
    return ModelCard(
        input_height=cfg.input_height,
        input_width=cfg.input_width,
        mean=cfg.mean,
        std=cfg.std,
        embedding_dim=net.embedding_dim,
        modality=modality,
        model_version=model_version,
        experiment=experiment,
        git_sha=git_sha,
        calibration=calibration,
    )


def export_encoders(
    net: VIReIDNet,
    out_dir: Path,
    *,
    model_version: str,
    experiment: str,
    git_sha: str | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-4,
    flip: bool | None = None,
    calibration: ScoreCalibration | None = None,
) -> dict[Modality, Path]:
    """Export one verified ONNX encoder per modality into ``out_dir``; returns their paths.

    Raises:
        ExportParityError: ONNX Runtime's embeddings differ from PyTorch's by more than ``atol``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    sha = git_sha if git_sha is not None else code_version()
    paths: dict[Modality, Path] = {}
    for modality in Modality:
        card = build_card(net, modality, model_version, experiment, sha, calibration)
        path = out_dir / encoder_filename(modality)
        _export_one(EncoderGraph(net, modality, flip).eval(), card, path, opset, atol)
        paths[modality] = path
        logger.info(
            "exported %s encoder to %s (dim %d, version %s)", modality.value, path, card.embedding_dim, model_version
        )
    return paths


@contextmanager
def exporter_warnings_only() -> Iterator[None]:
    """Hold the ONNX exporter's loggers at WARNING for the duration: no per-node/per-initializer INFO lines.

    ``torch.onnx.export(dynamo=True)`` optimises the graph with onnxscript and onnx_ir, whose passes log an INFO line
    per folded node and deduplicated initializer. Their warnings and errors still pass; a logger whose level was set
    explicitly (e.g. to DEBUG, to study the exporter) is left alone; the levels are put back after.
    """
    quieted = [lg for lg in map(logging.getLogger, EXPORTER_LOGGERS) if lg.level == logging.NOTSET]
    for lg in quieted:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg in quieted:
            lg.setLevel(logging.NOTSET)


def _export_one(graph: EncoderGraph, card: ModelCard, path: Path, opset: int, atol: float) -> None:
    """Export to a temp file, attach metadata, check, verify parity, then move it into place atomically."""
    example = torch.rand(2, 3, card.input_height, card.input_width, generator=torch.Generator().manual_seed(0))

    def write(tmp: Path) -> None:
        with torch.no_grad(), exporter_warnings_only():
            torch.onnx.export(
                graph,
                (example,),
                str(tmp),
                input_names=[ONNX_INPUT_NAME],
                output_names=[ONNX_OUTPUT_NAME],
                dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=4096)}},
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, card.to_metadata())
        proto.producer_name = "vireid"
        proto.producer_version = card.git_sha
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        max_diff = verify_parity(graph, tmp, card, atol)
        logger.info("parity %s: max |onnx - torch| = %.2e", card.modality.value, max_diff)

    atomic_write(path, write)


def verify_parity(graph: nn.Module, path: Path, card: ModelCard, atol: float = 1e-4) -> float:
    """Run the ONNX file on CPU for batches 1 and 5 and compare with PyTorch; returns the max abs difference.

    Raises:
        ExportParityError: the difference exceeds ``atol`` or the output shape is wrong.
    """
    import onnxruntime as ort  # local: only export needs it on the training side

    session = ort.InferenceSession(str(path), providers=[CPU_PROVIDER])
    worst = 0.0
    for batch in PARITY_BATCHES:
        gen = torch.Generator().manual_seed(batch)
        images = torch.rand(batch, 3, card.input_height, card.input_width, generator=gen)
        with torch.no_grad():
            expected = graph(images).numpy()
        got = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images.numpy()})[0]
        if got.shape != (batch, card.embedding_dim):
            raise ExportParityError(f"{path}: output shape {got.shape}, expected {(batch, card.embedding_dim)}")
        diff = float(np.max(np.abs(got - expected)))
        worst = max(worst, diff)
        if not diff <= atol:
            raise ExportParityError(
                f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} > {atol:g} at batch {batch} "
                f"({card.modality.value}); the exported graph is not the embedding"
            )
    return worst


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-4,
    flip: bool | None = None,
    score_calibration: Path | None = None,
) -> dict[Modality, Path]:
    """Load a training checkpoint and export both encoders, versioned by the checkpoint's hash.

    With ``score_calibration`` (a SYSU-MM01-layout root), the cards carry the same-person calibration fitted on its
    held-out identities (``training.calibration``).
    """
    from training.calibration import fit_score_calibration
    from training.checkpoint import checkpoint_hash, load_model

    net, cfg = load_model(checkpoint)
    calibration = fit_score_calibration(net, cfg.data, score_calibration, flip=flip) if score_calibration else None
    return export_encoders(
        net,
        out_dir,
        model_version=checkpoint_hash(checkpoint),
        experiment=cfg.experiment,
        opset=opset,
        atol=atol,
        flip=flip,
        calibration=calibration,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write encoder_{vis,ir}.onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--atol", type=float, default=1e-4, help="max |onnx - torch| allowed on embeddings")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="bake flip averaging in")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="no flip averaging")
    parser.add_argument(
        "--score-calibration",
        type=Path,
        metavar="ROOT",
        help="fit the same-person calibration on the held-out identities of this SYSU-MM01-layout set "
        "(exp/calib_id.txt, or the val ids of a model trained with data.hold_out_val=true)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    if not args.checkpoint.is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    paths = export_checkpoint(
        args.checkpoint,
        args.out,
        opset=args.opset,
        atol=args.atol,
        flip=args.flip,
        score_calibration=args.score_calibration,
    )
    for modality, path in paths.items():
        logger.info("%s: %s", modality.value, path)


if __name__ == "__main__":
    main()

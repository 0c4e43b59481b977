"""ONNX export of the embedding, one graph per modality, with ModelCard metadata and a parity check.

Usage: ``python -m training.export --checkpoint runs/tiny/checkpoint.pt --out models/``
``[--precision fp32|fp16|int8] [--calibration DATA_ROOT] [--embedding-dim D]``, or for benchmarks
``python -m training.export --config configs/sysu.yaml --untrained --out DIR [--precision ...]``.

Each graph computes ``VIReIDNet.embed`` from float32 RGB images in [0, 1] (normalisation inside the graph), with a
dynamic batch axis. The export is checked with ``onnx.checker`` and against PyTorch (batch 1 and an odd batch);
a difference above ``atol`` raises ``ExportParityError`` and leaves no file behind. ``--precision int8``/``fp16``
converts the verified fp32 graphs (``training.precision``), reports the cosine agreement with them on held-out crops
and refuses (``AgreementError``, no file left) below ``--min-cosine``; ``--embedding-dim`` bakes in a PCA projection
fitted on the training identities' embeddings (``training.projection``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from common.calibration import ScoreCalibration
from common.fsio import atomic_write
from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, PRECISIONS, ModelCard, encoder_filename
from common.providers import CPU_PROVIDER
from model.net import VIReIDNet
from training.crops import (
    DEFAULT_CALIBRATION_CROPS,
    DEFAULT_HELDOUT_CROPS,
    ModalityCrops,
    dataset_crops,
    synthetic_crops,
)
from training.precision import AgreementError, agreement, convert_fp16, quantize_int8
from training.projection import DEFAULT_PROJECTION_IMAGES, Projection, ProjectionLayer, fit_pca, training_features

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
PARITY_BATCHES = (1, 5)
DEFAULT_MIN_COSINE = 0.95
# Loggers of the graph passes torch.onnx.export runs (dynamo exporter): INFO per node and initializer.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


class ExportParityError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch embedding within tolerance."""


class EncoderGraph(nn.Module):
    """``images in [0, 1] -> embed(normalise(images), modality)``: the function each ONNX file computes."""

    def __init__(
        self, net: VIReIDNet, modality: Modality, flip: bool | None = None, projection: Projection | None = None
    ) -> None:
        super().__init__()
        self.net = net
        self.modality = modality
        self.flip = flip
        self.projection = ProjectionLayer(projection) if projection is not None else None
        cfg = net.cfg
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """Embed a ``(N, 3, H, W)`` batch of [0, 1] images."""
        out = self.net.embed((images - self.mean) / self.std, self.modality, flip=self.flip)
        return self.projection(out) if self.projection is not None else out


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
    projection: Projection | None = None,
) -> ModelCard:
    """The ModelCard of the (fp32) graph exported for ``modality``, with the same-person calibration if any."""
    cfg = net.cfg
    return ModelCard(
        input_height=cfg.input_height,
        input_width=cfg.input_width,
        mean=cfg.mean,
        std=cfg.std,
        embedding_dim=projection.dim if projection is not None else net.embedding_dim,
        modality=modality,
        model_version=model_version,
        experiment=experiment,
        git_sha=git_sha,
        calibration=calibration,
        projection=projection.name if projection is not None else "none",
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
    projection: Projection | None = None,
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
        card = build_card(net, modality, model_version, experiment, sha, calibration, projection)
        path = out_dir / encoder_filename(modality)
        _export_one(EncoderGraph(net, modality, flip, projection).eval(), card, path, opset, atol)
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


def export_model(
    net: VIReIDNet,
    out_dir: Path,
    *,
    precision: str = "fp32",
    crops: dict[Modality, ModalityCrops] | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
    model_version: str,
    experiment: str,
    git_sha: str | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-4,
    flip: bool | None = None,
    projection: Projection | None = None,
    calibration: ScoreCalibration | None = None,
) -> dict[Modality, Path]:
    """Export both encoders at ``precision``: the verified fp32 graphs, converted and checked when reduced.

    A reduced precision is written only when both modalities' embeddings agree with fp32 (min cosine over the
    held-out ``crops``) at ``min_cosine`` or better; int8 calibrates each modality on its own ``crops``.

    Raises:
        ExportParityError: the fp32 graph does not reproduce PyTorch.
        AgreementError: the reduced-precision embeddings are too far from the fp32 ones (no file is written).
        ValueError: a reduced precision without ``crops``.
    """

    def fp32(directory: Path) -> dict[Modality, Path]:
        return export_encoders(
            net,
            directory,
            model_version=model_version,
            experiment=experiment,
            git_sha=git_sha,
            opset=opset,
            atol=atol,
            flip=flip,
            projection=projection,
            calibration=calibration,
        )

    if precision == "fp32":
        return fp32(out_dir)
    if crops is None:
        raise ValueError(f"precision {precision} needs calibration/held-out crops")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vireid-export-") as tmp:
        converted = {m: _convert_checked(src, precision, crops[m], min_cosine) for m, src in fp32(Path(tmp)).items()}
        paths = {m: out_dir / encoder_filename(m) for m in Modality}
        for modality, src in converted.items():
            atomic_write(paths[modality], partial(shutil.copyfile, src))
            logger.info("wrote %s encoder (%s) to %s", modality.value, precision, paths[modality])
    return paths


def _convert_checked(src: Path, precision: str, crops: ModalityCrops, min_cosine: float) -> Path:
    """Convert the fp32 encoder ``src`` beside itself; returns the new file once its agreement is checked."""
    dst = src.with_name(f"{src.stem}.{precision}.onnx")
    if precision == "int8":
        quantize_int8(src, dst, crops.calibration)
    elif precision == "fp16":
        convert_fp16(src, dst)
    else:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    found = agreement(src, dst, crops.heldout)
    logger.info(
        "agreement %s vs fp32 (%s, %d held-out crops): min cosine %.4f, mean %.4f (threshold %.4f)",
        precision,
        src.stem,
        found.count,
        found.min_cosine,
        found.mean_cosine,
        min_cosine,
    )
    if not found.min_cosine >= min_cosine:
        raise AgreementError(
            f"{precision} {src.stem}: min cosine with fp32 {found.min_cosine:.4f} < {min_cosine:.4f} over "
            f"{found.count} held-out crops (mean {found.mean_cosine:.4f}); more --calibration-crops, or a lower "
            "--min-cosine if this loss is acceptable"
        )
    return dst


def untrained_network(config: Path) -> tuple[VIReIDNet, str, str]:
    """A random-init network of an experiment config (seeded with ``run.seed``), its model version and experiment."""
    from training.config import load_config

    cfg = load_config(config)
    torch.manual_seed(cfg.run.seed)
    net = VIReIDNet(cfg.model).eval()
    digest = hashlib.sha256(f"{cfg.model.model_dump_json()} seed={cfg.run.seed}".encode()).hexdigest()
    return net, f"untrained-{digest[:8]}", cfg.experiment


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="training checkpoint (.pt)")
    parser.add_argument("--config", type=Path, help="experiment config, with --untrained")
    parser.add_argument(
        "--untrained", action="store_true", help="export a seeded random-init network of --config (benchmarks)"
    )
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
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="arithmetic inside the graphs")
    parser.add_argument(
        "--calibration", type=Path, help="data set root (SYSU-MM01 layout): int8 calibration and agreement crops"
    )
    parser.add_argument("--calibration-crops", type=int, default=DEFAULT_CALIBRATION_CROPS, help="per modality")
    parser.add_argument("--heldout-crops", type=int, default=DEFAULT_HELDOUT_CROPS, help="agreement crops per modality")
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help="refuse an int8/fp16 export whose embeddings' min cosine with fp32 is below this",
    )
    parser.add_argument(
        "--embedding-dim", type=int, help="bake a PCA projection to this many dimensions into the graph"
    )
    parser.add_argument("--whiten", action="store_true", help="whiten the projection (not the default: see docs)")
    parser.add_argument(
        "--projection-images",
        type=int,
        default=DEFAULT_PROJECTION_IMAGES,
        help="training images (drawn at random) whose embeddings fit the projection",
    )
    return parser.parse_args(argv)


def _load(args: argparse.Namespace) -> tuple[VIReIDNet, str, str, Projection | None]:
    """The network, model version and experiment the arguments name, and the projection to bake in (if any)."""
    if args.untrained:
        if args.config is None or args.checkpoint is not None:
            raise SystemExit("--untrained takes --config CONFIG (and no --checkpoint)")
        if args.embedding_dim is not None:
            raise SystemExit("--embedding-dim fits a projection on a trained network's features: give --checkpoint")
        net, model_version, experiment = untrained_network(args.config)
        return net, model_version, experiment, None
    if args.checkpoint is None:
        raise SystemExit("give --checkpoint C, or --config CONFIG --untrained")
    if not args.checkpoint.is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    from training.checkpoint import checkpoint_hash, load_model
    from training.data.datasets import build_dataset

    net, cfg = load_model(args.checkpoint)
    net.eval()
    projection = None
    if args.embedding_dim is not None:
        data = build_dataset(cfg.data)
        samples = [*data.train_visible, *data.train_infrared]
        feats = training_features(net, samples, args.projection_images, args.flip)
        projection = fit_pca(feats, args.embedding_dim, args.whiten)
        logger.info("fitted %s on %d training images of %s", projection.name, len(feats), cfg.data.root)
    return net, checkpoint_hash(args.checkpoint), cfg.experiment, projection


def _score_calibration(args: argparse.Namespace) -> ScoreCalibration:
    """The same-person calibration of ``--score-calibration ROOT``, fitted on the checkpoint's network."""
    from training.calibration import fit_score_calibration
    from training.checkpoint import load_model

    if args.untrained:
        raise SystemExit("--score-calibration fits a trained network's scores: give --checkpoint")
    net, cfg = load_model(args.checkpoint)
    return fit_score_calibration(net, cfg.data, args.score_calibration, flip=args.flip)


def _crops(args: argparse.Namespace, net: VIReIDNet) -> dict[Modality, ModalityCrops] | None:
    """Calibration/held-out crops for a reduced precision: from ``--calibration``, else synthetic (said loudly)."""
    if args.precision == "fp32":
        return None
    size = (net.cfg.input_height, net.cfg.input_width)
    if args.calibration is not None:
        return dataset_crops(args.calibration, *size, args.calibration_crops, args.heldout_crops)
    if args.precision == "int8" and not args.untrained:
        raise SystemExit("--precision int8 needs --calibration DATA_ROOT (a data set in the SYSU-MM01 layout)")
    logger.warning(
        "no --calibration: %s on synthetic random crops (%d per modality): fine for speed, says nothing of accuracy",
        "calibrating int8 and checking its agreement" if args.precision == "int8" else "checking fp16 agreement",
        args.calibration_crops,
    )
    return synthetic_crops(*size, args.calibration_crops, args.heldout_crops)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    net, model_version, experiment, projection = _load(args)
    calibration = None
    if args.score_calibration is not None:
        if projection is not None:
            raise SystemExit("--score-calibration with --embedding-dim is not supported: calibrate the full embedding")
        calibration = _score_calibration(args)
    try:
        paths = export_model(
            net,
            args.out,
            precision=args.precision,
            crops=_crops(args, net),
            min_cosine=args.min_cosine,
            model_version=model_version,
            experiment=experiment,
            opset=args.opset,
            atol=args.atol,
            flip=args.flip,
            projection=projection,
            calibration=calibration,
        )
    except (AgreementError, ExportParityError) as exc:
        raise SystemExit(f"export refused: {exc}") from exc
    for modality, path in paths.items():
        logger.info("%s: %s", modality.value, path)


if __name__ == "__main__":
    main()

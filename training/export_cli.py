"""The command line of ``python -m training.export``: arguments to a network, its export options and its crops.

Usage: ``python -m training.export --checkpoint runs/tiny/checkpoint.pt --out models/``
``[--precision fp32|fp16|int8] [--calibration DATA_ROOT] [--embedding-dim D] [--score-calibration ROOT]``, or for
benchmarks ``python -m training.export --config configs/sysu.yaml --untrained --out DIR [--precision ...]``.

``--precision int8``/``fp16`` converts the verified fp32 graphs, reports the cosine agreement with them on held-out
crops of ``--calibration`` (synthetic crops without it, said loudly) and refuses below ``--min-cosine``;
``--embedding-dim`` bakes in a PCA projection fitted on the training identities' embeddings; ``--score-calibration``
stores the same-person calibration fitted on a set's held-out identities.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import training.export
from common.modality import Modality
from common.model_card import PRECISIONS
from model.net import VIReIDNet
from training.config import ExperimentConfig
from training.crops import (
    DEFAULT_CALIBRATION_CROPS,
    DEFAULT_HELDOUT_CROPS,
    ModalityCrops,
    dataset_crops,
    synthetic_crops,
)
from training.export import (
    DEFAULT_ATOL,
    DEFAULT_MIN_COSINE,
    DEFAULT_OPSET,
    ExportOptions,
    ExportParityError,
    export_model,
    trained_network,
    untrained_network,
    with_score_calibration,
)
from training.precision import INT8_TARGETS, AgreementError
from training.projection import DEFAULT_PROJECTION_IMAGES, Projection, fit_pca, training_features

logger = logging.getLogger(__name__)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    description = (training.export.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m training.export", description=description)
    parser.add_argument("--checkpoint", type=Path, help="training checkpoint (.pt)")
    parser.add_argument("--config", type=Path, help="experiment config, with --untrained")
    parser.add_argument(
        "--untrained", action="store_true", help="export a seeded random-init network of --config (benchmarks)"
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write encoder_{vis,ir}.onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="max |onnx - torch| allowed on embeddings")
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
    parser.add_argument(
        "--int8-target",
        choices=INT8_TARGETS,
        default="cpu",
        help="int8 recipe: cpu (unsigned activations, ONNX Runtime's fast kernels) or tensorrt (symmetric signed)",
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


def _load(args: argparse.Namespace) -> tuple[VIReIDNet, str, ExperimentConfig]:
    """The network the arguments name (loaded once), its model version and its experiment config."""
    if args.untrained:
        if args.config is None or args.checkpoint is not None:
            raise SystemExit("--untrained takes --config CONFIG (and no --checkpoint)")
        if args.embedding_dim is not None:
            raise SystemExit("--embedding-dim fits a projection on a trained network's features: give --checkpoint")
        return untrained_network(args.config)
    if args.checkpoint is None:
        raise SystemExit("give --checkpoint C, or --config CONFIG --untrained")
    if not args.checkpoint.is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    return trained_network(args.checkpoint)


def _projection(args: argparse.Namespace, net: VIReIDNet, cfg: ExperimentConfig) -> Projection | None:
    """The PCA projection of ``--embedding-dim``, fitted on the training images' embeddings (None without it)."""
    if args.embedding_dim is None:
        return None
    from training.data.datasets import build_dataset

    data = build_dataset(cfg.data)
    samples = [*data.train_visible, *data.train_infrared]
    feats = training_features(net, samples, args.projection_images, args.flip)
    projection = fit_pca(feats, args.embedding_dim, args.whiten)
    logger.info("fitted %s on %d training images of %s", projection.name, len(feats), cfg.data.root)
    return projection


def _options(args: argparse.Namespace, net: VIReIDNet, cfg: ExperimentConfig) -> ExportOptions:
    """The export options of the arguments, with the projection and score calibration fitted on ``net``."""
    if args.score_calibration is not None and args.embedding_dim is not None:
        raise SystemExit("--score-calibration with --embedding-dim is not supported: calibrate the full embedding")
    if args.score_calibration is not None and args.untrained:
        raise SystemExit("--score-calibration fits a trained network's scores: give --checkpoint")
    options = ExportOptions(
        opset=args.opset,
        atol=args.atol,
        flip=args.flip,
        projection=_projection(args, net, cfg),
        int8_target=args.int8_target,
    )
    if args.score_calibration is None:
        return options
    return with_score_calibration(options, net, cfg.data, args.score_calibration)


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
    """CLI entry point (``python -m training.export``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    net, model_version, cfg = _load(args)
    options = _options(args, net, cfg)
    try:
        paths = export_model(
            net,
            args.out,
            precision=args.precision,
            crops=_crops(args, net),
            min_cosine=args.min_cosine,
            model_version=model_version,
            experiment=cfg.experiment,
            options=options,
        )
    except (AgreementError, ExportParityError) as exc:
        raise SystemExit(f"export refused: {exc}") from exc
    for modality, path in paths.items():
        logger.info("%s: %s", modality.value, path)

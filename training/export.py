"""ONNX export of the embedding, one graph per modality, with ModelCard metadata and a parity check.

Each graph computes ``VIReIDNet.embed`` from float32 RGB images in [0, 1] (normalisation inside the graph), with a
dynamic batch axis. The export is checked with ``onnx.checker`` and against PyTorch (batch 1 and an odd batch);
a difference above ``ExportOptions.atol`` raises ``ExportParityError`` and leaves no file behind. ``export_model``
converts the verified fp32 graphs to int8/fp16 (``training.precision``) and refuses (``AgreementError``, no file
left) when their cosine agreement with fp32 on held-out crops is below ``min_cosine``; ``ExportOptions.projection``
bakes in a PCA projection (``training.projection``) and ``ExportOptions.calibration`` stores the same-person
calibration in the cards.

The command line (``python -m training.export --checkpoint C --out DIR``, or ``--config CONFIG --untrained`` for
benchmarks) is ``training/export_cli.py``; this module's ``__main__`` runs it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
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
from training.config import DataConfig, ExperimentConfig
from training.crops import ModalityCrops
from training.precision import AgreementError, agreement, convert_fp16, quantize_int8
from training.projection import Projection, ProjectionLayer

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
DEFAULT_ATOL = 1e-4
PARITY_BATCHES = (1, 5)
# The least per-crop cosine a reduced-precision export may have with fp32. The trained tiny model's int8 graphs
# measured 0.93 at worst over 32 held-out infrared crops (mean 0.96) for a loss of about one point of Rank-1
# (docs/results.md); 0.90 passes that and still stops a broken calibration.
DEFAULT_MIN_COSINE = 0.90
# Loggers of the graph passes torch.onnx.export runs (dynamo exporter): INFO per node and initializer.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


class ExportParityError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch embedding within tolerance."""


@dataclass(frozen=True)
class ExportOptions:
    """How the graphs are built and checked, and what they bake in beyond the network's embedding."""

    opset: int = DEFAULT_OPSET
    atol: float = DEFAULT_ATOL  # max |onnx - torch| allowed on embeddings
    flip: bool | None = None  # bake flip averaging in; None takes the network config's ``flip_embed``
    projection: Projection | None = None  # applied after the embedding, inside the graph
    calibration: ScoreCalibration | None = None  # the same-person calibration the cards carry
    int8_target: str = "cpu"  # int8 recipe (training.precision.INT8_TARGETS): ONNX Runtime's CPU kernels or TensorRT


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
    options: ExportOptions = ExportOptions(),
) -> dict[Modality, Path]:
    """Export one verified ONNX encoder per modality into ``out_dir``; returns their paths.

    Raises:
        ExportParityError: ONNX Runtime's embeddings differ from PyTorch's by more than ``options.atol``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    sha = git_sha if git_sha is not None else code_version()
    paths: dict[Modality, Path] = {}
    for modality in Modality:
        card = build_card(net, modality, model_version, experiment, sha, options.calibration, options.projection)
        path = out_dir / encoder_filename(modality)
        graph = EncoderGraph(net, modality, options.flip, options.projection).eval()
        _export_one(graph, card, path, options.opset, options.atol)
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


def verify_parity(graph: nn.Module, path: Path, card: ModelCard, atol: float = DEFAULT_ATOL) -> float:
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


def trained_network(checkpoint: Path) -> tuple[VIReIDNet, str, ExperimentConfig]:
    """A training checkpoint's network (eval mode), its model version (the checkpoint's hash) and its config."""
    from training.checkpoint import checkpoint_hash, load_model

    net, cfg = load_model(checkpoint)
    return net, checkpoint_hash(checkpoint), cfg


def with_score_calibration(options: ExportOptions, net: VIReIDNet, data: DataConfig, root: Path) -> ExportOptions:
    """``options`` with ``net``'s same-person calibration, fitted with their flip on the held-out ids of ``root``.

    ``root`` is a SYSU-MM01-layout set and ``data`` the checkpoint's data config (``training.calibration``).
    """
    from training.calibration import fit_score_calibration

    return replace(options, calibration=fit_score_calibration(net, data, root, flip=options.flip))


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    options: ExportOptions = ExportOptions(),
    score_calibration: Path | None = None,
) -> dict[Modality, Path]:
    """Load a training checkpoint and export both encoders, versioned by the checkpoint's hash.

    With ``score_calibration`` (a SYSU-MM01-layout root), the cards carry the same-person calibration fitted on its
    held-out identities (``with_score_calibration``).
    """
    net, model_version, cfg = trained_network(checkpoint)
    if score_calibration is not None:
        options = with_score_calibration(options, net, cfg.data, score_calibration)
    return export_encoders(net, out_dir, model_version=model_version, experiment=cfg.experiment, options=options)


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
    options: ExportOptions = ExportOptions(),
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
            net, directory, model_version=model_version, experiment=experiment, git_sha=git_sha, options=options
        )

    if precision == "fp32":
        return fp32(out_dir)
    if crops is None:
        raise ValueError(f"precision {precision} needs calibration/held-out crops")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vireid-export-") as tmp:
        converted = {
            m: _convert_checked(src, precision, crops[m], min_cosine, options.int8_target)
            for m, src in fp32(Path(tmp)).items()
        }
        paths = {m: out_dir / encoder_filename(m) for m in Modality}
        for modality, src in converted.items():
            atomic_write(paths[modality], partial(shutil.copyfile, src))
            logger.info("wrote %s encoder (%s) to %s", modality.value, precision, paths[modality])
    return paths


def _convert_checked(src: Path, precision: str, crops: ModalityCrops, min_cosine: float, int8_target: str) -> Path:
    """Convert the fp32 encoder ``src`` beside itself; returns the new file once its agreement is checked."""
    dst = src.with_name(f"{src.stem}.{precision}.onnx")
    if precision == "int8":
        quantize_int8(src, dst, crops.calibration, int8_target)
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


def untrained_network(config: Path) -> tuple[VIReIDNet, str, ExperimentConfig]:
    """A random-init network of an experiment config (seeded with ``run.seed``), its model version and the config."""
    from training.config import load_config

    cfg = load_config(config)
    torch.manual_seed(cfg.run.seed)
    net = VIReIDNet(cfg.model).eval()
    digest = hashlib.sha256(f"{cfg.model.model_dump_json()} seed={cfg.run.seed}".encode()).hexdigest()
    return net, f"untrained-{digest[:8]}", cfg


if __name__ == "__main__":
    from training.export_cli import main

    main()

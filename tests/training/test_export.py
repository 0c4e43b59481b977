"""ONNX export: parity with PyTorch, metadata, dynamic batch, and loud failure."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ModelCard, encoder_filename
from model.config import NetConfig
from model.net import VIReIDNet
from tests.conftest import TINY_MODEL_VERSION, TRAINING_TIMEOUT, ExportedModels
from training.checkpoint import save_checkpoint
from training.config import DataConfig, ExperimentConfig
from training.export import (
    DEFAULT_OPSET,
    EncoderGraph,
    ExportOptions,
    ExportParityError,
    export_encoders,
    exporter_warnings_only,
    verify_parity,
)
from training.export_cli import main


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("modality", list(Modality))
@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_torch(tiny_exported: ExportedModels, modality: Modality, batch: int) -> None:
    images = torch.rand(batch, 3, 64, 32, generator=torch.Generator().manual_seed(10 + batch))
    with torch.no_grad():
        expected = tiny_exported.graphs[modality](images).numpy()
    got = _session(tiny_exported.model_dir / encoder_filename(modality)).run(
        [ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images.numpy()}
    )[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_the_two_graphs_differ_by_modality(tiny_exported: ExportedModels) -> None:
    images = np.random.default_rng(0).random((2, 3, 64, 32), dtype=np.float32)
    outs = [
        _session(tiny_exported.model_dir / encoder_filename(m)).run(None, {ONNX_INPUT_NAME: images})[0]
        for m in Modality
    ]
    assert np.abs(outs[0] - outs[1]).max() > 1e-3  # separate stems: not the same function


def test_metadata_dynamic_batch_and_checker(tiny_exported: ExportedModels) -> None:
    for modality in Modality:
        path = tiny_exported.model_dir / encoder_filename(modality)
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert proto.graph.input[0].name == ONNX_INPUT_NAME and dims[0].dim_param and not dims[0].dim_value
        assert [d.dim_value for d in dims[1:]] == [3, 64, 32]
        card = ModelCard.from_metadata(_session(path).get_modelmeta().custom_metadata_map)
        assert card == ModelCard(
            64,
            32,
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
            2 * 512,
            modality,
            TINY_MODEL_VERSION,
            "tiny-test",
            "test",
        )


def test_parity_check_rejects_another_network(tiny_exported: ExportedModels) -> None:
    torch.manual_seed(1)
    other = VIReIDNet(NetConfig(arch="resnet18", num_classes=8, num_stripes=2, input_height=64, input_width=32))
    path = tiny_exported.model_dir / encoder_filename(Modality.VISIBLE)
    card = ModelCard.from_metadata(_session(path).get_modelmeta().custom_metadata_map)
    assert verify_parity(tiny_exported.graphs[Modality.VISIBLE], path, card) < 1e-4
    with pytest.raises(ExportParityError, match="differs from PyTorch"):
        verify_parity(EncoderGraph(other.eval(), Modality.VISIBLE).eval(), path, card)


def test_failed_parity_leaves_no_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=4, num_stripes=1, input_height=32, input_width=16))
    with pytest.raises(ExportParityError):
        export_encoders(net, tmp_path, model_version="x", experiment="x", git_sha="x", options=ExportOptions(atol=-1.0))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(TRAINING_TIMEOUT)
def test_export_checkpoint_is_versioned_by_the_checkpoint_hash(trained_exported: ExportedModels) -> None:
    from training.checkpoint import checkpoint_hash

    assert trained_exported.checkpoint is not None
    version = checkpoint_hash(trained_exported.checkpoint)
    for modality in Modality:
        meta = _session(trained_exported.model_dir / encoder_filename(modality)).get_modelmeta().custom_metadata_map
        card = ModelCard.from_metadata(meta)
        assert (card.model_version, card.modality, card.experiment) == (version, modality, "tiny")


def test_cli_names_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="checkpoint not found: .*nope.pt"):
        main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m")])


def test_exporter_loggers_hold_warnings_only_during_the_export() -> None:
    explicit = logging.getLogger("onnxscript")
    explicit.setLevel(logging.DEBUG)
    try:
        with exporter_warnings_only():
            dedup = logging.getLogger("onnx_ir.passes.common.initializer_deduplication")
            assert not dedup.isEnabledFor(logging.INFO) and dedup.isEnabledFor(logging.WARNING)
            assert explicit.level == logging.DEBUG  # set on purpose: left alone
        assert logging.getLogger("onnx_ir").level == logging.NOTSET
    finally:
        explicit.setLevel(logging.NOTSET)


def test_cli_prints_only_our_lines(tmp_path: Path) -> None:
    """``python -m training.export`` on a checkpoint: our export/parity/wrote lines, none of the exporter's INFO."""
    cfg = NetConfig(arch="resnet18", num_classes=3, num_stripes=2, input_height=32, input_width=16)
    torch.manual_seed(0)
    experiment = ExperimentConfig(experiment="quiet", model=cfg, data=DataConfig(name="sysu_mm01", root=tmp_path))
    checkpoint = save_checkpoint(tmp_path / "run", {"model": VIReIDNet(cfg).state_dict()}, experiment, 1, False)
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "training.export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m")]
    out = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, check=True)
    lines = (out.stdout + out.stderr).splitlines()
    assert not [line for line in lines if "initializer" in line or line.startswith(("INFO onnx", "INFO torch"))]
    assert [line.split(":")[0] for line in lines if line.startswith("INFO")] == ["INFO training.export"] * 4 + [
        "INFO training.export_cli"
    ] * 2
    text = "\n".join(lines)
    for expected in ("parity vis:", "parity ir:", "exported vis encoder", "exported ir encoder", "ir: "):
        assert expected in text

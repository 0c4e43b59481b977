"""Reduced-precision and compact exports: int8 QDQ graphs, fp16 graphs, baked-in projections, untrained networks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ModelCard, encoder_filename
from model.config import NetConfig
from model.net import VIReIDNet
from tests.conftest import TINY_MODEL_VERSION, TRAINING_TIMEOUT, ExportedModels
from tests.training.conftest import write_sysu_tree
from training.checkpoint import save_checkpoint
from training.config import DataConfig, ExperimentConfig
from training.crops import dataset_crops, synthetic_crops
from training.export import EncoderGraph, ExportOptions, export_model, untrained_network
from training.export_cli import main
from training.precision import AgreementError, agreement, embed_onnx, quantize_int8, read_card
from training.projection import fit_pca

REPO = Path(__file__).resolve().parents[2]
IMAGES = np.random.default_rng(7).random((6, 3, 64, 32), dtype=np.float32)


def _ops(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@dataclass(frozen=True)
class TinyEncoders:
    """One modality's tiny encoder at each precision: ``tiny_exported`` (fp32) and ``tiny_reduced`` (int8, fp16)."""

    modality: Modality
    paths: dict[str, Path]  # precision -> ONNX file


@pytest.fixture(params=list(Modality), ids=lambda m: m.value)
def tiny_encoders(
    request: pytest.FixtureRequest, tiny_reduced: dict[str, Path], tiny_exported: ExportedModels
) -> TinyEncoders:
    """The tiny encoders of one modality per precision; a test taking them runs once per modality."""
    modality: Modality = request.param
    name = encoder_filename(modality)
    reduced = {precision: directory / name for precision, directory in tiny_reduced.items()}
    return TinyEncoders(modality, {"fp32": tiny_exported.model_dir / name, **reduced})


@pytest.mark.slow
@pytest.mark.timeout(TRAINING_TIMEOUT)  # the first one builds the session's int8/fp16 exports (tiny_reduced)
def test_int8_graph_is_qdq_per_channel_and_agrees_with_fp32(tiny_encoders: TinyEncoders) -> None:
    path = tiny_encoders.paths["int8"]
    proto = onnx.load(str(path))
    ops = _ops(path)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > 10
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    weight_scales = [
        inits[n.input[1]]
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
    ]
    assert any(s.ndim == 1 and s.size > 1 for s in weight_scales)  # per-channel weight scales
    card = read_card(path)
    assert (card.precision, card.modality, card.model_version, card.embedding_dim) == (
        "int8",
        tiny_encoders.modality,
        TINY_MODEL_VERSION,
        1024,
    )
    found = agreement(tiny_encoders.paths["fp32"], path, IMAGES)
    assert found.min_cosine > 0.95 and found.count == len(IMAGES)


@pytest.mark.slow
@pytest.mark.timeout(TRAINING_TIMEOUT)  # the first one builds the session's int8/fp16 exports (tiny_reduced)
def test_fp16_graph_has_float16_weights_float32_ends_and_agrees(tiny_encoders: TinyEncoders) -> None:
    path = tiny_encoders.paths["fp16"]
    proto = onnx.load(str(path))
    types = Counter(i.data_type for i in proto.graph.initializer)
    assert types[onnx.TensorProto.FLOAT16] > types[onnx.TensorProto.FLOAT]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert read_card(path).precision == "fp16"
    out = embed_onnx(path, IMAGES)  # runs on the CPU provider
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    assert agreement(tiny_encoders.paths["fp32"], path, IMAGES).min_cosine > 0.999


def _zero_points(proto: onnx.ModelProto) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The zero points of the activation and of the weight DequantizeLinear nodes (int32 biases left out)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    deq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    activations = [inits[n.input[2]] for n in deq if n.input[0] not in inits]
    weights = [inits[n.input[2]] for n in deq if n.input[0] in inits and inits[n.input[0]].dtype != np.int32]
    return activations, weights


@pytest.mark.parametrize(
    ("target", "activation_dtype", "activation_zero"),
    [("cpu", np.uint8, False), ("tensorrt", np.int8, True)],
)
def test_int8_target_sets_the_activation_format(
    tiny_exported: ExportedModels, tmp_path: Path, target: str, activation_dtype: type, activation_zero: bool
) -> None:
    # cpu: unsigned activations (ONNX Runtime's fast x86 kernels); tensorrt: symmetric signed int8, every zero point 0
    src = tiny_exported.model_dir / encoder_filename(Modality.INFRARED)
    crops = synthetic_crops(64, 32, calibration=8, heldout=4)[Modality.INFRARED]
    dst = tmp_path / "int8.onnx"
    quantize_int8(src, dst, crops.calibration, target)
    activations, weights = _zero_points(onnx.load(str(dst)))
    assert activations and weights
    assert {z.dtype for z in activations} == {np.dtype(activation_dtype)}
    assert {z.dtype for z in weights} == {np.dtype(np.int8)}
    assert all(not z.any() for z in weights)
    assert all(not z.any() for z in activations) == activation_zero
    assert agreement(src, dst, crops.heldout).min_cosine > 0.95
    with pytest.raises(ValueError, match="unknown int8 target 'gpu'"):
        quantize_int8(src, dst, crops.calibration, "gpu")


def test_disagreement_past_the_threshold_refuses_and_writes_nothing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=4, num_stripes=1, input_height=32, input_width=16))
    crops = synthetic_crops(32, 16, calibration=4, heldout=4)
    out = tmp_path / "models"
    with pytest.raises(AgreementError, match=r"fp16 encoder_vis: min cosine with fp32 .* < 1\.0100"):
        export_model(net.eval(), out, precision="fp16", crops=crops, min_cosine=1.01, model_version="x", experiment="x")
    assert not out.exists() or list(out.iterdir()) == []


def test_pca_keeps_the_top_axes_orthonormal_and_whitening_scales_them() -> None:
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((200, 16)) * np.linspace(5, 0.1, 16)
    plain = fit_pca(feats, 4)
    assert plain.components.shape == (16, 4) and plain.name == "pca 16->4"
    np.testing.assert_allclose(plain.components.T @ plain.components, np.eye(4), atol=1e-5)
    assert np.argmax(np.abs(plain.components[:, 0])) == 0  # the widest axis first
    white = fit_pca(feats, 4, whiten=True)
    projected = (feats - white.mean) @ white.components
    np.testing.assert_allclose(projected.std(axis=0, ddof=1), 1.0, rtol=1e-3)
    with pytest.raises(ValueError, match="embedding dim 17 must be between 1 and min"):
        fit_pca(feats, 17)


def test_projection_is_baked_into_the_graph_and_the_card(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=4, num_stripes=2, input_height=32, input_width=16)).eval()
    rng = np.random.default_rng(1)
    projection = fit_pca(rng.standard_normal((64, net.embedding_dim)).astype(np.float32), 24)
    options = ExportOptions(projection=projection)
    paths = export_model(net, tmp_path, model_version="p", experiment="p", git_sha="p", options=options)
    path = paths[Modality.INFRARED]
    card = read_card(path)
    assert (card.embedding_dim, card.projection, card.precision) == (24, "pca 1024->24", "fp32")
    assert _ops(path)["MatMul"] >= 1
    images = rng.random((3, 3, 32, 16), dtype=np.float32)
    got = embed_onnx(path, images)
    with torch.no_grad():
        full = EncoderGraph(net, Modality.INFRARED)(torch.from_numpy(images)).numpy()
    expected = (full - projection.mean) @ projection.components
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_calibration_crops_come_from_each_modality_and_are_bounded(tmp_path: Path) -> None:
    tree = write_sysu_tree(tmp_path / "SYSU-MM01")
    crops = dataset_crops(tree.root, 16, 8, calibration=5, heldout=100)
    for modality in Modality:
        assert crops[modality].calibration.shape == (5, 3, 16, 8)
        assert crops[modality].heldout.dtype == np.float32 and 0 <= crops[modality].heldout.min() <= 1
    # test ids 5-10: 5 IR queries each of cams 3/6 minus the missing folders; visible gallery: one per id and camera
    assert len(crops[Modality.INFRARED].heldout) > len(crops[Modality.VISIBLE].heldout) > 0
    # the fake tree paints each folder its own colour: visible (cams 1,2,4,5) and infrared (3,6) crops differ
    assert not np.array_equal(crops[Modality.VISIBLE].calibration, crops[Modality.INFRARED].calibration[:5])


def test_untrained_network_is_seeded_and_versioned_by_its_config() -> None:
    first, version, cfg = untrained_network(REPO / "configs" / "tiny.yaml")
    second, again, _ = untrained_network(REPO / "configs" / "tiny.yaml")
    assert version == again and version.startswith("untrained-") and cfg.experiment == "tiny"
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_cli_exports_the_untrained_network(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    main(["--config", str(REPO / "configs" / "tiny.yaml"), "--untrained", "--out", str(tmp_path)])
    card = read_card(tmp_path / encoder_filename(Modality.VISIBLE))
    assert card.model_version.startswith("untrained-") and card.embedding_dim == 1024 and card.precision == "fp32"
    ir = onnx.load(str(tmp_path / encoder_filename(Modality.INFRARED)))
    assert ir.graph.input[0].name == ONNX_INPUT_NAME
    # the int8 recipe for TensorRT reaches the graph: symmetric signed activations
    trt = tmp_path / "trt"
    config = ["--config", str(REPO / "configs" / "tiny.yaml"), "--untrained"]
    main([*config, "--out", str(trt), "--precision", "int8", "--int8-target", "tensorrt", "--calibration-crops", "8"])
    activations, _ = _zero_points(onnx.load(str(trt / encoder_filename(Modality.INFRARED))))
    assert activations and all(z.dtype == np.int8 and not z.any() for z in activations)


def test_cli_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    cfg = NetConfig(arch="resnet18", num_classes=3, num_stripes=1, input_height=32, input_width=16)
    experiment = ExperimentConfig(experiment="e", model=cfg, data=DataConfig(name="sysu_mm01", root=tmp_path))
    checkpoint = save_checkpoint(tmp_path / "run", {"model": VIReIDNet(cfg).state_dict()}, experiment, 1, False)
    out = ["--out", str(tmp_path / "m")]
    with pytest.raises(SystemExit, match="--precision int8 needs --calibration DATA_ROOT"):
        main(["--checkpoint", str(checkpoint), "--precision", "int8", *out])
    with pytest.raises(SystemExit, match="give --checkpoint C, or --config CONFIG --untrained"):
        main(out)
    with pytest.raises(SystemExit, match="--untrained takes --config"):
        main(["--untrained", *out])
    with pytest.raises(SystemExit, match="--embedding-dim fits a projection on a trained network"):
        main(["--config", str(REPO / "configs" / "tiny.yaml"), "--untrained", "--embedding-dim", "8", *out])
    # refused before any work: this checkpoint's data root holds no data set for the projection to be fitted on
    with pytest.raises(SystemExit, match="--score-calibration with --embedding-dim is not supported"):
        main(["--checkpoint", str(checkpoint), "--score-calibration", str(tmp_path), "--embedding-dim", "8", *out])
    with pytest.raises(SystemExit, match="--score-calibration fits a trained network's scores"):
        main(
            ["--config", str(REPO / "configs" / "tiny.yaml"), "--untrained", "--score-calibration", str(tmp_path), *out]
        )


def test_card_of_an_fp32_export_says_fp32(tiny_exported: ExportedModels) -> None:
    card: ModelCard = read_card(tiny_exported.model_dir / encoder_filename(Modality.VISIBLE))
    assert (card.precision, card.projection) == ("fp32", "none")

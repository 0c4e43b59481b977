"""``training.evaluate --onnx``: exported encoders scored by ONNX Runtime equal the checkpoint scored by torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.net import VIReIDNet
from tests.training.conftest import write_sysu_run
from training.data.sysu import SYSUMM01
from training.evaluate import main
from training.export import export_model
from training.features import embed_samples
from training.onnx_features import OnnxEmbedder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, VIReIDNet, Path]:
    """A checkpoint on a fake SYSU-MM01 tree, its fp32 export, the network and the tree's root."""
    work = tmp_path_factory.mktemp("onnx_eval")
    checkpoint, net, root = write_sysu_run(work)
    model_dir = work / "models"
    export_model(net, model_dir, model_version="ev", experiment="ev", git_sha="ev")
    return checkpoint, model_dir, net, root


def test_onnx_embedder_equals_the_torch_embedding(exported: tuple[Path, Path, VIReIDNet, Path]) -> None:
    _, model_dir, net, root = exported
    data = SYSUMM01(root, num_trials=1)
    samples = [*data.train_visible[:3], *data.train_infrared[:4]]
    got = OnnxEmbedder(model_dir, batch_size=2).embed(samples)
    expected = embed_samples(net, samples, torch.device("cpu"), flip=False)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_evaluate_onnx_reports_the_torch_metrics(exported: tuple[Path, Path, VIReIDNet, Path], tmp_path: Path) -> None:
    checkpoint, model_dir, _, _ = exported
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "t.json"), "--workers", "0"]) == 0
    assert main(["--checkpoint", str(checkpoint), "--onnx", str(model_dir), "--out", str(tmp_path / "o.json")]) == 0
    by_torch = json.loads((tmp_path / "t.json").read_text())["results"]
    by_onnx = json.loads((tmp_path / "o.json").read_text())
    assert by_onnx["onnx"] == str(model_dir)
    # The fake tree's images are flat colours: near-tied distances, which float rounding (ONNX Runtime vs torch,
    # ~1e-7) reorders here and there; the metrics agree to a fraction of a point (percent).
    for group in ("sysu/all", "sysu/indoor"):
        for metric, value in by_torch[group]["no_flip"].items():
            assert by_onnx["results"][group]["onnx"][metric] == pytest.approx(value, abs=0.5)

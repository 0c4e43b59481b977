"""Session fixtures shared across packages: the synthetic data set, real tiny VIReIDNet encoders exported to ONNX
(random init and trained on the synthetic set).

Torch and the training code are imported inside the fixtures, so collecting the serving-side tests needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.modality import Modality

TINY_MODEL_VERSION = "0000tiny0000"
# Seconds allowed to a test that may be the first to need `trained_run` (the training runs in its setup).
TRAINING_TIMEOUT = 1500
# The synthetic set used by end-to-end tests: the demo's (the training.synth defaults: many ids, few images each, so
# that the model generalises to unseen ids).
SYNTH = {"ids": 360, "train_ids": 320, "images_per_cam": 2, "height": 64, "width": 32, "seed": 0}
# configs/tiny.yaml as the README and the demo run it (~890 iterations), without the in-training evaluation.
TRAIN_OVERRIDES = ["run.eval_every=0", "data.num_trials=2"]


@dataclass(frozen=True)
class ExportedModels:
    """A model directory with ``encoder_{vis,ir}.onnx`` and the torch graphs they were exported from."""

    model_dir: Path
    graphs: dict[Modality, Any]  # training.export.EncoderGraph per modality, eval mode
    checkpoint: Path | None = None


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic cross-modal set in the SYSU-MM01 layout (written once per session)."""
    from training.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(**SYNTH))
    return root


@pytest.fixture(scope="session")
def tiny_exported(tmp_path_factory: pytest.TempPathFactory) -> ExportedModels:
    """A random-init tiny VIReIDNet (resnet18, 64x32 input, 2 stripes) exported to ONNX with parity checked."""
    import torch

    from model.config import NetConfig
    from model.net import VIReIDNet
    from training.export import EncoderGraph, export_encoders

    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=8, num_stripes=2, input_height=64, input_width=32)).eval()
    model_dir = tmp_path_factory.mktemp("tiny_models")
    export_encoders(net, model_dir, model_version=TINY_MODEL_VERSION, experiment="tiny-test", git_sha="test")
    return ExportedModels(model_dir, {m: EncoderGraph(net, m).eval() for m in Modality})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> Path:
    """Train configs/tiny.yaml (shortened) on the synthetic set; returns the checkpoint path."""
    from training.config import load_config
    from training.distributed import init_distributed
    from training.train import fit, seed_everything

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(
        repo / "configs" / "tiny.yaml",
        [*TRAIN_OVERRIDES, f"data.root={synth_root}", f"run.out_dir={out}", "run.device=cpu"],
    )
    seed_everything(cfg.run.seed)
    return fit(cfg, init_distributed("cpu"))


@pytest.fixture(scope="session")
def trained_exported(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> ExportedModels:
    """The trained tiny model exported to ONNX (versioned by its checkpoint hash)."""
    from training.checkpoint import load_model
    from training.export import EncoderGraph, export_checkpoint

    model_dir = tmp_path_factory.mktemp("trained_models")
    export_checkpoint(trained_run, model_dir)
    net, _ = load_model(trained_run)
    net.eval()
    return ExportedModels(model_dir, {m: EncoderGraph(net, m).eval() for m in Modality}, trained_run)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real Milvus standalone server (``bench/milvus_server.py``), loopback only; stopped by its handle at the end.

    Tests that stop it to inject a fault start it again before they return.
    """
    from bench.milvus_server import LocalMilvusServer

    server = LocalMilvusServer(tmp_path_factory.mktemp("milvus_server"))
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tiny_reduced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ``tiny_exported`` network (same seed and config) exported at int8 and at fp16: precision -> model dir.

    Calibration and agreement use synthetic crops (a random-init network has no data set to speak of).
    """
    import torch

    from model.config import NetConfig
    from model.net import VIReIDNet
    from training.crops import synthetic_crops
    from training.export import export_model

    torch.manual_seed(0)
    net = VIReIDNet(NetConfig(arch="resnet18", num_classes=8, num_stripes=2, input_height=64, input_width=32)).eval()
    crops = synthetic_crops(64, 32, calibration=16, heldout=8)
    dirs = {}
    for precision in ("int8", "fp16"):
        dirs[precision] = tmp_path_factory.mktemp(f"tiny_{precision}")
        export_model(
            net,
            dirs[precision],
            precision=precision,
            crops=crops,
            model_version=TINY_MODEL_VERSION,
            experiment="tiny-test",
            git_sha="test",
        )
    return dirs

"""bench/encoder_profile.py: the reference graph, the arithmetic count and ONNX Runtime's per-op profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.encoder_profile import CONVOLUTIONS, PlainResNet, export_graph, macs_per_image, op_profile
from common.modality import Modality
from model.config import NetConfig
from model.net import VIReIDNet
from training.export import EncoderGraph


def test_plain_resnet50_counts_torchvisions_published_arithmetic() -> None:
    # torchvision's ResNet-50 card: 4.09 GFLOPS at 224x224, which are multiply-accumulates; last stride 2 there
    plain = PlainResNet(NetConfig(arch="resnet50", last_stride=2, input_height=224, input_width=224))
    assert macs_per_image(plain, 224, 224) == pytest.approx(4.09e9, rel=0.01)


def test_our_graph_costs_the_plain_backbone_plus_little() -> None:
    # at inference one stem runs per image: HAGL, GeM and the BNNecks add under 2 % to the ResNet's arithmetic
    cfg = NetConfig(arch="resnet18", num_classes=4, num_stripes=2, input_height=64, input_width=32)
    torch.manual_seed(0)
    ours = macs_per_image(EncoderGraph(VIReIDNet(cfg), Modality.INFRARED), 64, 32)
    plain = macs_per_image(PlainResNet(cfg), 64, 32)
    assert 1.0 <= ours / plain < 1.02


def test_profile_sums_kernel_time_by_op_type(tmp_path: Path) -> None:
    cfg = NetConfig(arch="resnet18", input_height=64, input_width=32)
    path = tmp_path / "plain.onnx"
    export_graph(PlainResNet(cfg), path, 64, 32)
    images = np.random.default_rng(0).random((2, 3, 64, 32), dtype=np.float32)
    per_op = op_profile(path, images, threads=1, runs=2, tmp=tmp_path)
    assert all(v > 0 for v in per_op.values())
    conv = sum(v for k, v in per_op.items() if k in CONVOLUTIONS)
    assert conv / sum(per_op.values()) > 0.5  # a ResNet's time is its convolutions

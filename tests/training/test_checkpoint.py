"""Checkpoints: round trip, RNG state, strict loading, content hash, ImageNet weights from a local file."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from common.modality import Modality
from model.config import NetConfig
from model.net import VIReIDNet
from training.checkpoint import (
    CheckpointError,
    PretrainedWeightsNotFoundError,
    checkpoint_hash,
    epoch_checkpoint_path,
    load_checkpoint,
    load_model,
    load_pretrained,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.config import DataConfig, ExperimentConfig
from training.engine import build_optimizer
from training.schedule import build_scheduler

NET = NetConfig(arch="resnet18", num_stripes=2, num_classes=3, input_height=32, input_width=16)


def _cfg(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig(experiment="ck", model=NET, data=DataConfig(name="sysu_mm01", root=tmp_path / "d"))


def _trained_state(tmp_path: Path) -> tuple[VIReIDNet, dict[str, object]]:
    torch.manual_seed(0)
    net = VIReIDNet(NET)
    optimizer = build_optimizer(net, _cfg(tmp_path).optim)
    scheduler = build_scheduler(optimizer, _cfg(tmp_path).schedule)
    x = torch.randn(2, 3, 32, 16, generator=torch.Generator().manual_seed(1))
    out = net(x, x.flip(0))
    (out.feats.pow(2).mean() + sum(s.mean() for s in out.logits)).backward()
    optimizer.step()
    scheduler.step()
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": {},
        "sampler": {"seed": 0, "epoch": 1},
    }
    return net, state


def test_round_trip_and_strict_model_load(tmp_path: Path) -> None:
    net, state = _trained_state(tmp_path)
    cfg = _cfg(tmp_path)
    run_dir = tmp_path / "run"
    last = save_checkpoint(run_dir, state, cfg, epoch=3)
    assert last == run_dir / "checkpoint.pt" and epoch_checkpoint_path(run_dir, 3).is_file()
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "checkpoints"]  # no temp files left
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 3 and ckpt["sampler"] == {"seed": 0, "epoch": 1}
    assert ckpt["scheduler"]["last_epoch"] == 1
    moment = state["optimizer"]["state"][0]["momentum_buffer"]  # type: ignore[index]
    assert torch.equal(ckpt["optimizer"]["state"][0]["momentum_buffer"], moment)
    loaded, loaded_cfg = load_model(last)
    assert loaded_cfg == cfg and not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    net.eval()
    x = torch.rand(3, 3, 32, 16)
    assert torch.equal(loaded.embed(x, Modality.INFRARED), net.embed(x, Modality.INFRARED))


def test_strict_load_rejects_a_foreign_state_dict(tmp_path: Path) -> None:
    _, state = _trained_state(tmp_path)
    state["model"] = {**state["model"], "extra.weight": torch.zeros(1)}  # type: ignore[dict-item]
    last = save_checkpoint(tmp_path / "run", state, _cfg(tmp_path), epoch=1, keep_epoch=False)
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_model(last)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    set_rng_state(state)
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    assert first == again


def test_checkpoint_hash_is_a_sha256_prefix(tmp_path: Path) -> None:
    path = tmp_path / "f.pt"
    path.write_bytes(b"weights v1")
    assert checkpoint_hash(path) == hashlib.sha256(b"weights v1").hexdigest()[:12]
    path.write_bytes(b"weights v2")
    assert checkpoint_hash(path) == hashlib.sha256(b"weights v2").hexdigest()[:12]


def test_missing_pretrained_file_names_path_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "resnet18.pth"
    with pytest.raises(PretrainedWeightsNotFoundError) as info:
        load_pretrained(VIReIDNet(NET), missing)
    message = str(info.value)
    assert str(missing) in message and "run.pretrained=null" in message and "resnet18" in message


def test_pretrained_weights_fill_both_stems_and_shared_layers(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = resnet18().state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(reference, path)
    net = VIReIDNet(NET)
    load_pretrained(net, path)
    params = dict(net.named_parameters())
    stems = [name for name in params if name.endswith("conv1.weight") and ".specific." in f".{name}"]
    assert len(stems) == 2  # one stem per modality
    for name in stems:
        assert torch.equal(params[name], reference["conv1.weight"]), name
    shared = [name for name in params if name.endswith("layer4.1.conv2.weight")]
    assert len(shared) == 1 and torch.equal(params[shared[0]], reference["layer4.1.conv2.weight"])

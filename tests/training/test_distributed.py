"""The DDP path (torchrun, gloo on CPU) at world size 1 trains exactly like a single process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.training.conftest import write_sysu_tree
from tests.training.test_train import TINY
from training.checkpoint import load_checkpoint
from training.distributed import init_distributed, mean_over_ranks, resolve_device
from training.train import main

ROOT = Path(__file__).resolve().parents[2]


def test_single_process_without_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.enabled, info.is_main) == (0, 1, False, True)
    assert mean_over_ranks({"loss": 2.5}, info) == {"loss": 2.5}
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="run.device=cpu"):
            resolve_device("cuda")


@pytest.mark.slow
def test_torchrun_world_size_one_matches_single_process(tmp_path: Path) -> None:
    write_sysu_tree(tmp_path / "sysu")
    raw = {
        **TINY,
        "data": {**TINY["data"], "root": str(tmp_path / "sysu")},
        "run": {**TINY["run"], "out_dir": str(tmp_path)},
        "schedule": {**TINY["schedule"], "epochs": 1},
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        "-m",
        "training.train",
        str(config),
        "experiment=ddp",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DDP rank 0/1 (local 0) on cpu with gloo" in done.stderr
    assert main([str(config), "experiment=single"]) == 0
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model"]
    single = load_checkpoint(tmp_path / "single" / "checkpoint.pt")["model"]
    assert ddp.keys() == single.keys()
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-6, msg=key)

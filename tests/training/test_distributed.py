"""The DDP path (torchrun, gloo on CPU) at world size 1 trains exactly like a single process."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import yaml

from tests.service.support import free_port
from tests.training.conftest import write_sysu_tree
from tests.training.test_train import TINY
from training.checkpoint import load_checkpoint
from training.distributed import init_distributed, mean_over_ranks, resolve_device, wait_for_main
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


def _wait_worker(rank: int, port: int, out: Path) -> None:
    """Rank 0 'evaluates' (sleeps) while rank 1 waits: first within a long wait timeout, then past a short one."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    long_wait = init_distributed("cpu", timedelta(seconds=60))
    short_wait = init_distributed("cpu", timedelta(seconds=1))  # joined already: only a second wait group
    outcomes = []
    for info, evaluation_s in ((long_wait, 3.0), (short_wait, 4.0)):
        if rank == 0:
            time.sleep(evaluation_s)
        try:
            wait_for_main(info)
            outcomes.append("ok")
        except RuntimeError:
            outcomes.append("timeout")
    (out / f"rank{rank}.txt").write_text(" ".join(outcomes))


@pytest.mark.slow
def test_other_ranks_wait_for_a_long_evaluation_up_to_the_wait_timeout(tmp_path: Path) -> None:
    """Two gloo ranks: a 3 s 'evaluation' on rank 0 is waited for within a 60 s wait timeout, and a 4 s one past
    a 1 s timeout fails on rank 1 instead of hanging: the wait follows ``run.eval_wait_minutes``."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_wait_worker, args=(rank, port, tmp_path)) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert (tmp_path / "rank0.txt").read_text().split()[0] == "ok"
    assert (tmp_path / "rank1.txt").read_text().split() == ["ok", "timeout"]

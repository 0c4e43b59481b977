"""LR schedule: per-epoch warm-up 0.01 -> 0.1 over epochs 0-9, 0.1 until 20, 0.01 from 20, 0.001 from 60."""

from __future__ import annotations

import pytest
import torch

from training.config import ScheduleConfig
from training.schedule import build_scheduler, lr_factor


@pytest.mark.parametrize(
    ("epoch", "lr"),
    [(0, 0.01), (1, 0.02), (4, 0.05), (9, 0.1), (10, 0.1), (19, 0.1), (20, 0.01), (59, 0.01), (60, 0.001), (79, 0.001)],
)
def test_lr_at_epoch_boundaries(epoch: int, lr: float) -> None:
    assert 0.1 * lr_factor(epoch, ScheduleConfig()) == pytest.approx(lr, rel=1e-9)


def test_scheduler_scales_each_group_and_round_trips() -> None:
    head = torch.nn.Parameter(torch.zeros(1))
    backbone = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [head], "lr": 0.1}, {"params": [backbone], "lr": 0.01}], lr=0.1)
    sched = build_scheduler(opt, ScheduleConfig())
    seen = []
    for _ in range(25):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([0.01, 0.001])
    assert seen[9] == pytest.approx([0.1, 0.01])
    assert seen[20] == pytest.approx([0.01, 0.001])
    # a fresh optimiser + scheduler loaded from the state dict continues at the same epoch
    opt2 = torch.optim.SGD([{"params": [head], "lr": 0.1}, {"params": [backbone], "lr": 0.01}], lr=0.1)
    sched2 = build_scheduler(opt2, ScheduleConfig())
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    sched.step()
    sched2.step()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_no_warmup_and_single_epoch_warmup() -> None:
    assert lr_factor(0, ScheduleConfig(warmup_epochs=0, milestones=(2,))) == 1.0
    assert lr_factor(2, ScheduleConfig(warmup_epochs=0, milestones=(2,))) == pytest.approx(0.1)
    assert lr_factor(0, ScheduleConfig(warmup_epochs=1)) == 1.0

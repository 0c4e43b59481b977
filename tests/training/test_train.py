"""End-to-end training on a fake SYSU-MM01 tree: run directory, exact resume, clear errors for bad inputs."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import PIL
import pytest
import torch
import yaml
from tqdm import tqdm

from tests.conftest import TRAINING_TIMEOUT
from tests.training.conftest import write_sysu_tree
from training.checkpoint import PretrainedWeightsNotFoundError, load_checkpoint
from training.config import config_from_dict, load_config
from training.data.base import DatasetLayoutError
from training.distributed import DistInfo
from training.train import ResumeMismatchError, RunExistsError, fit, main

TINY = {
    "experiment": "t",
    "model": {"arch": "resnet18", "num_stripes": 2, "input_height": 32, "input_width": 16},
    "data": {"name": "sysu_mm01", "root": "", "workers": 0, "num_trials": 2},
    "sampler": {"num_ids": 2, "num_instances": 2},
    "augment": {"pad": 2},
    "schedule": {"epochs": 2, "warmup_epochs": 1, "milestones": [1]},
    "run": {"out_dir": "", "device": "cpu", "eval_every": 0, "max_iters": 2},
}
# The learning test: SYSU all-search mAP on the unseen test ids, trained (the session's tiny run) minus untrained.
# Measured with these fixtures: untrained 6.0%, trained ~21% (2 trials); ask for +8 points and at least double.
LEARN_MARGIN = 0.08  # absolute mAP (fraction)
CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), enabled=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fake SYSU tree (3 training ids) and a tiny config pointing at it; returns (config path, work dir)."""
    work = tmp_path_factory.mktemp("train")
    write_sysu_tree(work / "sysu")
    raw = {**TINY, "data": {**TINY["data"], "root": str(work / "sysu")}, "run": {**TINY["run"], "out_dir": str(work)}}
    path = work / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, work


def _model_state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_equals_an_uninterrupted_run(setup: tuple[Path, Path]) -> None:
    config, work = setup
    assert main([str(config), "experiment=full", "run.eval_every=2"]) == 0
    assert main([str(config), "experiment=split", "schedule.epochs=1"]) == 0
    first_half = _model_state(work / "split" / "checkpoint.pt")
    assert main([str(config), "experiment=split", "--resume"]) == 0
    full = load_checkpoint(work / "full" / "checkpoint.pt")
    split = load_checkpoint(work / "split" / "checkpoint.pt")
    with (work / "split" / "metrics.csv").open(newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]  # the resumed run kept epoch 1's row
    assert full["epoch"] == split["epoch"] == 2
    assert full["model"].keys() == split["model"].keys()
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key
    for group_full, group_split in zip(
        full["optimizer"]["state"].values(), split["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(group_full["momentum_buffer"], group_split["momentum_buffer"])
    assert full["scheduler"]["last_epoch"] == split["scheduler"]["last_epoch"] == 2
    # the second epoch really trained: parameters moved from the first half's
    assert any(not torch.equal(v, first_half[k]) for k, v in full["model"].items() if v.is_floating_point())


def test_run_directory_holds_config_checkpoints_and_tensorboard(setup: tuple[Path, Path]) -> None:
    config, work = setup
    run_dir = work / "full"
    if not (run_dir / "checkpoint.pt").exists():
        assert main([str(config), "experiment=full", "run.eval_every=2"]) == 0
    resolved = load_config(run_dir / "config.yaml")
    assert resolved == load_config(config, ["experiment=full", "run.eval_every=2", "model.num_classes=3"])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss/total", "train/loss/dcl", "train/lr/new", "eval/sysu/all/mAP", "eval/sysu/indoor/R1"} <= tags
    lr = [e.value for e in events.Scalars("train/lr/new")]
    assert lr == pytest.approx([0.1, 0.01])  # warm-up of one epoch, then the milestone at epoch 1
    # metrics.csv: the same numbers per epoch; evaluation columns filled on the evaluated epoch only
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss/total", "loss/id", "loss/triplet", "loss/dcl", "lr/new", "lr/backbone", "eval/sysu/all/mAP"} <= set(
        rows[0]
    )
    assert [float(r["lr/new"]) for r in rows] == pytest.approx(lr)
    total = [e.value for e in events.Scalars("train/loss/total")]
    assert [float(r["loss/total"]) for r in rows] == pytest.approx(total)
    assert rows[0]["eval/sysu/all/mAP"] == ""
    assert float(rows[1]["eval/sysu/all/mAP"]) == pytest.approx(events.Scalars("eval/sysu/all/mAP")[0].value)


def test_progress_bar_shows_the_running_losses(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    cfg = load_config(config, ["experiment=bar", "schedule.epochs=1"])
    screen = io.StringIO()

    def progress(it: Iterable[Any], desc: str) -> Iterable[Any]:
        return tqdm(it, desc=desc, file=screen, mininterval=0)

    fit(cfg, CPU, progress=progress)
    shown = screen.getvalue()
    assert "epoch 1/1" in shown and re.search(r"total=\d+\.\d{3}", shown) and "dcl=" in shown, shown
    with (cfg.run_dir / "metrics.csv").open(newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]


def test_the_checkpoint_is_saved_before_the_evaluation_that_fails(tmp_path: Path) -> None:
    """A corrupt test image breaks the evaluation after epoch 1; the epoch's checkpoint is already on disk."""
    tree = write_sysu_tree(tmp_path / "sysu")
    tree.files[(3, 5)][0].write_bytes(b"not an image")  # an infrared query of test id 5: training never reads it
    raw = {
        **TINY,
        "data": {**TINY["data"], "root": str(tree.root)},
        "run": {**TINY["run"], "out_dir": str(tmp_path), "eval_every": 1},
    }
    cfg = config_from_dict({**raw, "experiment": "evalfails"})
    with pytest.raises(PIL.UnidentifiedImageError):
        fit(cfg, CPU)
    ckpt = load_checkpoint(tmp_path / "evalfails" / "checkpoint.pt")
    assert ckpt["epoch"] == 1
    assert (tmp_path / "evalfails" / "checkpoints" / "epoch_001.pt").is_file()


def test_existing_run_needs_resume(setup: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    config, work = setup
    cfg = load_config(config, ["experiment=exists"])
    (work / "exists").mkdir()
    (work / "exists" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(RunExistsError, match="--resume"):
        fit(cfg, CPU)
    with caplog.at_level(logging.ERROR):
        assert main([str(config), "experiment=exists"]) == 2
    assert "--resume" in caplog.text


def test_resume_with_a_different_recipe_is_refused(setup: tuple[Path, Path]) -> None:
    config, work = setup
    if not (work / "split" / "checkpoint.pt").exists():
        assert main([str(config), "experiment=split", "schedule.epochs=1"]) == 0
    cfg = load_config(config, ["experiment=split", "optim.lr=0.5", "loss.margin=0.1"])
    with pytest.raises(ResumeMismatchError, match=r"loss\.margin: 0\.3 -> 0\.1.*optim\.lr: 0\.1 -> 0\.5"):
        fit(cfg, CPU, resume=True)


def test_missing_data_set_folder_is_one_clear_error(setup: tuple[Path, Path]) -> None:
    config, work = setup
    cfg = load_config(config, ["experiment=nodata", f"data.root={work / 'absent'}"])
    with pytest.raises(DatasetLayoutError, match="absent"):
        fit(cfg, CPU)


def test_missing_pretrained_file_is_one_clear_error(setup: tuple[Path, Path]) -> None:
    config, work = setup
    cfg = load_config(config, ["experiment=noweights", f"run.pretrained={work / 'weights' / 'r18.pth'}"])
    with pytest.raises(PretrainedWeightsNotFoundError, match=r"weights/r18\.pth.*run\.pretrained=null"):
        fit(cfg, CPU)


@pytest.mark.slow
@pytest.mark.timeout(TRAINING_TIMEOUT)
def test_tiny_config_learns_cross_modal_matching(trained_run: Path, synth_root: Path) -> None:
    """configs/tiny.yaml, shortened, on the synthetic set: cross-modal mAP on UNSEEN ids clearly above untrained."""
    from model.net import VIReIDNet
    from training.checkpoint import load_model
    from training.data.datasets import build_dataset
    from training.eval_loop import evaluate_splits

    trained, cfg = load_model(trained_run)
    assert cfg.data.root == synth_root
    splits = build_dataset(cfg.data).eval_splits()  # infrared queries of the test ids vs visible galleries
    torch.manual_seed(cfg.run.seed)
    untrained = VIReIDNet(cfg.model)
    cpu = torch.device("cpu")
    before = evaluate_splits(untrained, splits, cpu, batch_size=128)
    after = evaluate_splits(trained, splits, cpu, batch_size=128)
    logging.getLogger(__name__).info("untrained %s, trained %s", before, after)
    gain = after["sysu/all"]["mAP"] - before["sysu/all"]["mAP"]
    assert gain > LEARN_MARGIN, (before, after)
    assert after["sysu/all"]["mAP"] > 2 * before["sysu/all"]["mAP"], (before, after)

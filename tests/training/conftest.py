"""Fixtures and helpers writing fake data set trees in the real on-disk layouts (tiny images), the synthetic set and
a checkpointed run on a fake tree, returning what they wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image

from model.config import NetConfig
from model.net import VIReIDNet
from training.checkpoint import save_checkpoint
from training.config import DataConfig, ExperimentConfig
from training.synth import SynthConfig, generate


def _write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)
    Image.new("RGB", (4, 8), colour).save(path)


@dataclass
class FakeSYSU:
    """A SYSU-MM01 tree: ``files[(cam, pid)]`` lists the images of each existing ``cam<cam>/<pid:04d>`` folder."""

    root: Path
    train_ids: list[int]
    val_ids: list[int]
    test_ids: list[int]
    files: dict[tuple[int, int], list[Path]] = field(default_factory=dict)


# Deviations from "3 images in each of cam1..cam6": id 3 has no infrared images (dropped from training),
# 6 lacks cam2, 7 lacks cam4 and cam5, 8 lacks cam6, 9 has 6 images in cam1, 10 has 1 image in cam3.
SYSU_COUNTS: dict[tuple[int, int], int] = {(3, 3): 0, (6, 3): 0, (2, 6): 0, (4, 7): 0, (5, 7): 0, (6, 8): 0}
SYSU_COUNTS.update({(1, 9): 6, (3, 10): 1})


def write_sysu_tree(root: Path) -> FakeSYSU:
    """Write a fake SYSU-MM01: train ids 1-3, val 4, test 5-10 (listed out of order in test_id.txt)."""
    tree = FakeSYSU(root, train_ids=[1, 2, 3], val_ids=[4], test_ids=[9, 5, 10, 6, 7, 8])
    for pid in range(1, 11):
        for cam in range(1, 7):
            count = SYSU_COUNTS.get((cam, pid), 3)
            if count:
                paths = [root / f"cam{cam}" / f"{pid:04d}" / f"{k:04d}.jpg" for k in range(1, count + 1)]
                for k, path in enumerate(paths):
                    _write_image(path, pid * 100 + cam * 10 + k)
                tree.files[(cam, pid)] = paths
    (root / "exp").mkdir(parents=True)
    for name, ids in (("train", tree.train_ids), ("val", tree.val_ids), ("test", tree.test_ids)):
        (root / "exp" / f"{name}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    return tree


@dataclass
class FakeRegDB:
    """A RegDB tree: ``lists[(subset, modality_word, trial)]`` holds the ``(relpath, label)`` lines written."""

    root: Path
    lists: dict[tuple[str, str, int], list[tuple[str, int]]] = field(default_factory=dict)


def write_regdb_tree(root: Path) -> FakeRegDB:
    """Eight ids (0-7), two images per modality; trial 1 trains on 0-3 and tests 4-7, trial 2 the reverse."""
    tree = FakeRegDB(root)
    for pid in range(8):
        for folder, prefix in (("Visible", "v"), ("Thermal", "t")):
            for k in range(2):
                _write_image(root / folder / str(pid) / f"{prefix}_{pid}_{k}.bmp", pid * 10 + k)
    halves = {1: ([0, 1, 2, 3], [4, 5, 6, 7]), 2: ([4, 5, 6, 7], [0, 1, 2, 3])}
    (root / "idx").mkdir(parents=True)
    for trial, (train_ids, test_ids) in halves.items():
        for subset, ids in (("train", train_ids), ("test", test_ids)):
            for word, folder, prefix in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
                lines = [(f"{folder}/{pid}/{prefix}_{pid}_{k}.bmp", pid) for pid in ids for k in range(2)]
                text = "".join(f"{rel} {label}\n" for rel, label in lines)
                (root / "idx" / f"{subset}_{word}_{trial}.txt").write_text(text)
                tree.lists[(subset, word, trial)] = lines
    return tree


@dataclass
class FakeLLCM:
    """An LLCM tree: training lines per modality and ``test_files[(modality_dir, cam, pid)]``."""

    root: Path
    test_ids: list[int]
    train: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    test_files: dict[tuple[str, int, int], list[Path]] = field(default_factory=dict)


LLCM_TEST_CAMS: dict[str, dict[int, list[int]]] = {  # modality dir -> pid -> cameras
    "test_vis": {11: [1, 2, 4], 12: [1, 3, 9], 13: [2, 4]},
    "test_nir": {11: [1, 2, 5], 12: [2, 9], 13: [1, 5]},
}


def write_llcm_tree(root: Path) -> FakeLLCM:
    """Train ids 1-3 (labels 0-2, two cameras each), test ids 11-13 over a few cameras, two images per folder."""
    tree = FakeLLCM(root, test_ids=[13, 11, 12])
    for modality_dir, list_name in (("train_vis", "train_vis.txt"), ("train_nir", "train_nir.txt")):
        lines = []
        for label, pid in enumerate([1, 2, 3]):
            for cam in (label + 1, label + 4):
                for k in range(2):
                    rel = f"{modality_dir}/cam{cam}/{pid:04d}/{pid:04d}_c{cam:02d}_{k:04d}.jpg"
                    _write_image(root / rel, pid + cam + k)
                    lines.append((rel, label))
        tree.train[modality_dir] = lines
        (root / "idx").mkdir(parents=True, exist_ok=True)
        (root / "idx" / list_name).write_text("".join(f"{rel} {label}\n" for rel, label in lines))
    for modality_dir, cams_of in LLCM_TEST_CAMS.items():
        for pid, cams in cams_of.items():
            for cam in cams:
                paths = [root / modality_dir / f"cam{cam}" / f"{pid:04d}" / f"{pid:04d}_{k}.jpg" for k in range(2)]
                for k, path in enumerate(paths):
                    _write_image(path, pid * 7 + cam + k)
                tree.test_files[(modality_dir, cam, pid)] = paths
    (root / "idx" / "test_id.txt").write_text(",".join(str(i) for i in tree.test_ids))
    return tree


def write_synth_set(factory: pytest.TempPathFactory, config: SynthConfig) -> Path:
    """Generate the synthetic set of ``config`` in a fresh temporary folder and return its root."""
    root = factory.mktemp("synth") / "set"
    generate(root, config)
    return root


SYSU_RUN_NET = NetConfig(arch="resnet18", num_stripes=2, num_classes=3, input_height=32, input_width=16)


def sysu_run_config(root: Path) -> ExperimentConfig:
    """The config of a run of ``SYSU_RUN_NET`` on the fake SYSU-MM01 tree at ``root``, scored over two trials."""
    data = DataConfig(name="sysu_mm01", root=root, num_trials=2)
    return ExperimentConfig(experiment="ev", model=SYSU_RUN_NET, data=data)


def write_sysu_run(work: Path) -> tuple[Path, VIReIDNet, Path]:
    """A fake SYSU-MM01 tree in ``work/sysu`` and a seed-0 random net saved in ``work/run``: (checkpoint, net, root)."""
    root = write_sysu_tree(work / "sysu").root
    torch.manual_seed(0)
    net = VIReIDNet(SYSU_RUN_NET).eval()
    path = save_checkpoint(work / "run", {"model": net.state_dict()}, sysu_run_config(root), epoch=1, keep_epoch=False)
    return path, net, root


@pytest.fixture
def sysu_tree(tmp_path: Path) -> FakeSYSU:
    return write_sysu_tree(tmp_path / "SYSU-MM01")


@pytest.fixture
def regdb_tree(tmp_path: Path) -> FakeRegDB:
    return write_regdb_tree(tmp_path / "RegDB")


@pytest.fixture
def llcm_tree(tmp_path: Path) -> FakeLLCM:
    return write_llcm_tree(tmp_path / "LLCM")

"""Evaluation plots: ``training.evaluate --plots DIR`` writes CMC curves and ranked-list figures as real PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.modality import Modality
from model.config import NetConfig
from model.net import VIReIDNet
from tests.training.conftest import write_sysu_tree
from training.checkpoint import save_checkpoint
from training.config import DataConfig, ExperimentConfig
from training.data.base import EvalSplit, Sample
from training.data.datasets import build_dataset
from training.eval_loop import evaluate_splits
from training.evaluate import main
from training.plots import CORRECT, WRONG, mean_cmc, pick_queries, plot_ranked_lists

NET = NetConfig(arch="resnet18", num_stripes=2, num_classes=3, input_height=32, input_width=16)


def _png(path: Path, min_size: tuple[int, int]) -> np.ndarray:
    """Open ``path`` as a PNG at least ``min_size`` (w, h) and at most 4000 px a side; its RGB pixels."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert min_size[0] <= img.width <= 4000 and min_size[1] <= img.height <= 4000, img.size
        return np.asarray(img.convert("RGB"))


def _has_colour(pixels: np.ndarray, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(pixels.astype(int) - rgb).sum(axis=2) < 12).sum() > 50)


def test_cli_writes_cmc_and_ranked_list_pngs(tmp_path: Path) -> None:
    root = write_sysu_tree(tmp_path / "sysu").root
    torch.manual_seed(0)
    net = VIReIDNet(NET).eval()
    cfg = ExperimentConfig(experiment="pl", model=NET, data=DataConfig(name="sysu_mm01", root=root, num_trials=2))
    path = save_checkpoint(tmp_path / "run", {"model": net.state_dict()}, cfg, epoch=1, keep_epoch=False)
    plots, out = tmp_path / "plots", tmp_path / "r.json"
    args = ["--checkpoint", str(path), "--workers", "0", "--device", "cpu", "--out", str(out), "--plots", str(plots)]
    assert main(args) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["cmc.png", "ranked_sysu_all.png", "ranked_sysu_indoor.png"]
    _png(plots / "cmc.png", (400, 300))
    ranked = _png(plots / "ranked_sysu_all.png", (800, 200))
    assert _has_colour(ranked, CORRECT) or _has_colour(ranked, WRONG)
    # the curves are the protocol's: their Rank-1/5/10/20 are the report's (no flip)
    distances: list[tuple[EvalSplit, np.ndarray]] = []
    evaluate_splits(net, build_dataset(cfg.data).eval_splits(), torch.device("cpu"), False, distances=distances)
    curves = mean_cmc(distances)
    report = json.loads(out.read_text())["results"]
    for group, cmc in curves.items():
        assert cmc.shape == (20,) and np.all(np.diff(cmc) >= 0)
        for rank in (1, 5, 10, 20):
            assert 100 * cmc[rank - 1] == pytest.approx(report[group]["no_flip"][f"R{rank}"], abs=0.006)


def _sample(tmp_path: Path, name: str, pid: int, colour: tuple[int, int, int], modality: Modality) -> Sample:
    path = tmp_path / f"{name}.png"
    Image.new("RGB", (16, 32), colour).save(path)
    return Sample(path, pid, 1 if modality is Modality.VISIBLE else 3, modality)


def test_ranked_list_borders_are_green_for_the_identity_and_red_otherwise(tmp_path: Path) -> None:
    """Two queries, a gallery of 3 crops of id 1 and 9 of other ids; distances put id 1 at ranks 1 and 3."""
    queries = tuple(_sample(tmp_path, f"q{p}", p, (90, 90, 90), Modality.INFRARED) for p in (1, 2))
    gallery = tuple(
        _sample(tmp_path, f"g{i}", 1 if i < 3 else 10 + i, (200, 200, 50 + 10 * i), Modality.VISIBLE) for i in range(12)
    )
    split = EvalSplit("regdb", "ir2vis", 1, queries, gallery)
    distmat = np.tile(np.linspace(0.5, 1.0, 12), (2, 1))
    distmat[0, [0, 1, 2]] = [0.1, 0.3, 0.99]  # query id 1: hits at ranks 1 and 2, the third beyond the top-10
    assert pick_queries(split, 4) == [0, 1]
    pixels = _png(plot_ranked_lists(split, distmat, tmp_path / "ranked.png", num_queries=2, top_k=10), (800, 200))
    height, width = pixels.shape[:2]
    first_row = pixels[: height // 2]
    columns = np.array_split(np.arange(width), 11)  # query + 10 results, equal widths
    colour_of = [
        "green" if _has_colour(first_row[:, cols], CORRECT) else "red" if _has_colour(first_row[:, cols], WRONG) else ""
        for cols in columns[1:]
    ]
    assert colour_of == ["green", "green"] + ["red"] * 8
    second_row = pixels[int(0.55 * height) :]  # below the first row's borders
    assert not _has_colour(second_row, CORRECT) and _has_colour(second_row, WRONG)  # no crop of id 2 in the gallery

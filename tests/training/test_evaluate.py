"""Evaluation CLI: a checkpoint scored on a fake SYSU-MM01 tree equals the protocol applied by hand."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from common.modality import Modality
from model.net import VIReIDNet
from tests.training.conftest import SYSU_RUN_NET as NET
from tests.training.conftest import sysu_run_config, write_sysu_run
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.data.sysu import process_gallery_sysu, process_query_sysu
from training.evaluate import main
from training.metrics import eval_sysu
from training.transforms import eval_batch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VIReIDNet, Path]:
    return write_sysu_run(tmp_path_factory.mktemp("eval"))


def _by_hand(net: VIReIDNet, root: Path, mode: str, trials: int) -> dict[str, float]:
    """Query/gallery lists of the protocol builders, ``net.embed`` per modality, ``eval_sysu``, mean of trials."""
    q_paths, q_pids, q_cams = process_query_sysu(root, mode)
    with torch.no_grad():
        q = net.embed(eval_batch(q_paths, NET), Modality.INFRARED).numpy()
    runs = []
    for trial in range(trials):
        g_paths, g_pids, g_cams = process_gallery_sysu(root, mode, trial)
        with torch.no_grad():
            g = net.embed(eval_batch(g_paths, NET), Modality.VISIBLE).numpy()
        cmc, mAP, mINP = eval_sysu(1 - q @ g.T, q_pids, g_pids, q_cams, g_cams)
        runs.append([cmc[0], cmc[4], cmc[9], cmc[19], mAP, mINP])
    return dict(zip(["R1", "R5", "R10", "R20", "mAP", "mINP"], np.mean(runs, axis=0) * 100, strict=True))


def test_cli_writes_protocol_metrics_in_percent(checkpoint: tuple[Path, VIReIDNet, Path], tmp_path: Path) -> None:
    path, net, root = checkpoint
    out = tmp_path / "results.json"
    assert main(["--checkpoint", str(path), "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["model_version"] == checkpoint_hash(path) and report["experiment"] == "ev"
    assert report["unit"] == "percent" and report["data"][0]["num_trials"] == 2
    assert set(report["results"]) == {"sysu/all", "sysu/indoor"}
    for mode in ("all", "indoor"):
        got = report["results"][f"sysu/{mode}"]
        assert set(got) == {"no_flip", "flip"}
        expected = _by_hand(net, root, mode, trials=2)
        for key, value in expected.items():
            assert got["no_flip"][key] == pytest.approx(value, abs=0.006), (mode, key)


def test_cli_data_override_and_errors(
    checkpoint: tuple[Path, VIReIDNet, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _, _ = checkpoint
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(path), "--data", f"sysu_mm01={tmp_path / 'absent'}", "--workers", "0"]) == 2
    assert "absent" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in caplog.text
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(path), "--data", "sysu_mm01"]) == 2
    assert "NAME=ROOT" in caplog.text


def test_cli_untrained_scores_a_random_init_of_the_checkpoint_config(
    checkpoint: tuple[Path, VIReIDNet, Path], tmp_path: Path
) -> None:
    _, _, root = checkpoint
    torch.manual_seed(7)  # the checkpoint's weights differ from the seed-0 random init
    trained = VIReIDNet(NET).eval()
    cfg = sysu_run_config(root)
    path = save_checkpoint(tmp_path / "run", {"model": trained.state_dict()}, cfg, epoch=1, keep_epoch=False)
    out = tmp_path / "untrained.json"
    assert main(["--checkpoint", str(path), "--untrained", "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["weights"].startswith("random init")
    torch.manual_seed(cfg.run.seed)
    untrained = VIReIDNet(NET).eval()
    expected = _by_hand(untrained, root, "all", trials=2)
    assert expected != _by_hand(trained, root, "all", trials=2)
    for key, value in expected.items():
        assert report["results"]["sysu/all"]["no_flip"][key] == pytest.approx(value, abs=0.006), key


def _fused_by_hand(q: np.ndarray, q_pids: np.ndarray, q_cams: np.ndarray, k: int) -> np.ndarray:
    """Each query with the next k - 1 of its identity and camera (wrapping), averaged and renormalised."""
    fused = []
    for i in range(len(q)):
        same = [j for j in range(len(q)) if (q_pids[j], q_cams[j]) == (q_pids[i], q_cams[i])]
        start = same.index(i)
        rows = [same[(start + t) % len(same)] for t in range(min(k, len(same)))]
        mean = (q[rows] / np.linalg.norm(q[rows], axis=1, keepdims=True)).mean(axis=0)
        fused.append(mean / np.linalg.norm(mean))
    return np.asarray(fused)


def test_cli_rerank_and_tracklets_score_the_fused_queries_both_ways(
    checkpoint: tuple[Path, VIReIDNet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from index.kreciprocal import rerank_distmat

    path, net, root = checkpoint
    out = tmp_path / "rerank.json"
    argv = ["--checkpoint", str(path), "--out", str(out), "--workers", "0", "--device", "cpu", "--trials", "1"]
    assert main([*argv, "--rerank", "--tracklet", "2", "--rerank-candidates", "5"]) == 0
    report = json.loads(out.read_text())
    assert report["tracklet"] == 2 and report["rerank"] == {"k1": 20, "k2": 6, "lambda": 0.3, "candidates": 5}
    table = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line for line in table[2:] if line.startswith("sysu/all ")}
    assert set(rows) == {"no_flip", "flip", "no_flip+rerank", "flip+rerank"}
    assert len({len(line) for line in [table[0], *rows.values()]}) == 1  # one column width for every flip key
    got = report["results"]["sysu/all"]
    assert set(got) == {"no_flip", "flip", "no_flip+rerank", "flip+rerank"}
    q_paths, q_pids, q_cams = process_query_sysu(root, "all")
    g_paths, g_pids, g_cams = process_gallery_sysu(root, "all", 0)
    with torch.no_grad():
        q = _fused_by_hand(net.embed(eval_batch(q_paths, NET), Modality.INFRARED).numpy(), q_pids, q_cams, 2)
        g = net.embed(eval_batch(g_paths, NET), Modality.VISIBLE).numpy()
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    for key, distmat in (("no_flip", 1 - q @ g.T), ("no_flip+rerank", rerank_distmat(q, g, candidates=5))):
        cmc, mAP, mINP = eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
        assert got[key]["mAP"] == pytest.approx(100 * mAP, abs=0.006), key
        assert got[key]["R1"] == pytest.approx(100 * cmc[0], abs=0.006), key
    assert got["no_flip"] != got["no_flip+rerank"]
    assert main([*argv, "--tracklet", "0"]) == 2


def test_tracklets_take_the_next_images_of_the_same_identity_and_camera() -> None:
    from training.data.base import Sample
    from training.eval_loop import tracklets

    def s(pid: int, cam: int) -> Sample:
        return Sample(Path(f"{pid}_{cam}.jpg"), pid, cam, Modality.INFRARED)

    query = [s(1, 3), s(1, 3), s(2, 3), s(1, 6), s(1, 3)]
    assert tracklets(query, 1) == [[0], [1], [2], [3], [4]]
    assert tracklets(query, 2) == [[0, 1], [1, 4], [2], [3], [4, 0]]
    assert tracklets(query, 4) == [[0, 1, 4], [1, 4, 0], [2], [3], [4, 0, 1]]

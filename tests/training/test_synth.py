"""The synthetic set: SYSU-MM01 layout readable by our readers, deterministic, identity in shape and pattern."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.agw_reference import ref_process_gallery_sysu, ref_process_query_sysu
from tests.training.conftest import write_synth_set
from training.data.sysu import SYSUMM01, calibration_ids, identity_samples, process_gallery_sysu, process_query_sysu
from training.synth import (
    LOWER,
    LOWER2,
    UPPER,
    UPPER2,
    SynthConfig,
    _identity,
    generate,
    infrared_response,
    main,
    split_ids,
)

TINY = SynthConfig(ids=12, train_ids=6, images_per_cam=3, height=64, width=32, seed=1, calib_ids=2)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synth_set(tmp_path_factory, TINY)


def test_layout_is_read_by_the_sysu_readers(synth_root: Path) -> None:
    summary = json.loads((synth_root / "synth.json").read_text())
    data = SYSUMM01(synth_root)
    assert data.num_train_pids == 6 == len(summary["train_ids"]) + len(summary["val_ids"])
    assert len(data.train_infrared) == 6 * 2 * 3
    assert len(summary["test_ids"]) == 6
    query = process_query_sysu(synth_root)
    assert sorted(set(query[1].tolist())) == summary["test_ids"] and len(query[0]) == 6 * 2 * 3
    assert query[0] == ref_process_query_sysu(str(synth_root))[0]
    for mode in ("all", "indoor"):
        assert process_gallery_sysu(synth_root, mode, 4)[0] == ref_process_gallery_sysu(str(synth_root), mode, 4)[0]
    with Image.open(query[0][0]) as img:
        assert img.size == (32, 64) and img.mode == "RGB"


def test_calibration_ids_are_extra_identities_apart_from_train_and_test(synth_root: Path) -> None:
    summary = json.loads((synth_root / "synth.json").read_text())
    assert summary["calib_ids"] == [13, 14] == calibration_ids(synth_root)
    assert (synth_root / "exp" / "calib_id.txt").read_text() == "13,14\n"
    visible, infrared = identity_samples(synth_root, summary["calib_ids"])
    assert {s.pid for s in visible} == {s.pid for s in infrared} == {13, 14}
    assert len(infrared) == 2 * 2 * 3 and all(s.camid in (3, 6) for s in infrared)
    assert all(s.camid in (1, 2, 4, 5) for s in visible) and len(visible) >= 2 * 3
    # Adding calibration ids leaves the train/val/test split as it was (images depend on seed, pid, camera only).
    plain = split_ids(SynthConfig(**{**TINY.__dict__, "calib_ids": 0}))
    assert (summary["train_ids"], summary["val_ids"], summary["test_ids"]) == plain


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(synth_root: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", TINY)
    first, second = _files(synth_root), _files(tmp_path / "again")
    first.pop("synth.json"), second.pop("synth.json")  # records its own root
    assert first == second
    assert again.num_visible == sum(1 for name in first if name.split("/")[0] in {"cam1", "cam2", "cam4", "cam5"})
    other = _files(Path(generate(tmp_path / "other", SynthConfig(**{**TINY.__dict__, "seed": 2})).root))
    assert other["cam1/0001/0001.jpg"] != first["cam1/0001/0001.jpg"]


def _torso_features(root: Path, cams: tuple[int, ...], grey_bins: bool) -> tuple[np.ndarray, np.ndarray]:
    """Colour (or grey) histogram of the central torso box of every image of ``cams``; and the pids."""
    feats, pids = [], []
    for cam in cams:
        for path in sorted((root / f"cam{cam}").rglob("*.jpg")):
            a = np.asarray(Image.open(path).convert("RGB")).astype(int)
            h, w = a.shape[:2]
            box = a[h // 4 : h // 2, 2 * w // 5 : 3 * w // 5]
            if grey_bins:
                index = box.mean(axis=2).astype(int) // 32
            else:
                q = box // 64
                index = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
            hist = np.bincount(index.ravel(), minlength=8 if grey_bins else 64)
            feats.append(hist / hist.sum())
            pids.append(int(path.parent.name))
    return np.array(feats), np.array(pids)


def _nn_accuracy(q: np.ndarray, q_pids: np.ndarray, g: np.ndarray, g_pids: np.ndarray, same_set: bool) -> float:
    dist = np.abs(q[:, None] - g[None]).sum(-1)
    if same_set:
        np.fill_diagonal(dist, np.inf)
    return float((g_pids[dist.argmin(axis=1)] == q_pids).mean())


def test_identity_is_carried_within_each_modality(synth_root: Path) -> None:
    chance = 1 / TINY.ids
    vis, vis_pids = _torso_features(synth_root, (1, 2, 4, 5), grey_bins=False)
    ir, ir_pids = _torso_features(synth_root, (3, 6), grey_bins=True)
    for feats, pids, factor in ((vis, vis_pids, 6), (ir, ir_pids, 4)):
        dist = np.abs(feats[:, None] - feats[None]).sum(-1)
        same = (pids[:, None] == pids[None]) & ~np.eye(len(pids), dtype=bool)
        assert dist[same].mean() < 0.8 * dist[pids[:, None] != pids[None]].mean()
        assert _nn_accuracy(feats, pids, feats, pids, same_set=True) > factor * chance


def test_infrared_is_a_fixed_response_of_colour_not_its_luminance(synth_root: Path) -> None:
    ir_path = next((synth_root / "cam3").rglob("*.jpg"))
    ir_pixels = np.asarray(Image.open(ir_path)).astype(int)
    assert np.abs(ir_pixels - ir_pixels[..., :1]).max() <= 2  # three equal channels
    vis_pixels = np.asarray(Image.open(next((synth_root / "cam1").rglob("*.jpg")))).astype(int)
    assert np.abs(vis_pixels - vis_pixels[..., :1]).mean() > 10  # colour
    idents = [_identity(0, pid) for pid in range(1, 301)]
    colours = np.array([i.colours[UPPER] for i in idents])
    ir = np.array([i.ir_levels[UPPER] for i in idents])
    luminance = colours @ [0.299, 0.587, 0.114]
    assert np.corrcoef(infrared_response(colours), ir)[0, 1] > 0.95  # one fixed sensor response for everyone
    assert np.abs(ir - infrared_response(colours)).max() < 0.1  # up to a small per-id deviation
    assert np.corrcoef(luminance, ir)[0, 1] < 0.7  # not the grey level of the colour
    red, blue = np.array([0.9, 0.2, 0.2]), np.array([0.2, 0.2, 0.9])
    assert infrared_response(red) > infrared_response(blue) + 0.4  # warm bright, blue dark
    assert (red @ [0.299, 0.587, 0.114]) - (blue @ [0.299, 0.587, 0.114]) < 0.25  # while luminance is close
    for ident in idents:  # patterns stay visible in both modalities
        for first, second in ((UPPER, UPPER2), (LOWER, LOWER2)):
            assert np.abs(ident.colours[first] - ident.colours[second]).sum() >= 0.6
            assert abs(ident.ir_levels[first] - ident.ir_levels[second]) >= 0.25 - 1e-9


def test_generate_is_idempotent_and_refuses_foreign_folders(synth_root: Path, tmp_path: Path) -> None:
    before = _files(synth_root)
    assert generate(synth_root, TINY).test_ids == json.loads(before["synth.json"])["test_ids"]
    assert _files(synth_root) == before
    with pytest.raises(FileExistsError, match="not empty"):
        generate(synth_root, SynthConfig(**{**TINY.__dict__, "seed": 5}))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate(tmp_path / "busy", TINY)
    with pytest.raises(ValueError, match="train_ids"):
        generate(tmp_path / "bad", SynthConfig(ids=4, train_ids=4))


def test_cli_writes_the_set(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path / "cli"), "--ids", "4", "--train-ids", "2", "--images-per-cam", "1", "--calib-ids"]
    main([*argv, "1"])
    main([*argv, "1"])  # no-op
    assert (tmp_path / "cli" / "exp" / "test_id.txt").read_text().count(",") == 1
    assert (tmp_path / "cli" / "exp" / "calib_id.txt").read_text() == "5\n"
    assert len(list((tmp_path / "cli" / "cam3").rglob("*.jpg"))) == 5
    main(
        ["--out", str(tmp_path / "none"), "--ids", "4", "--train-ids", "2", "--images-per-cam", "1", "--calib-ids", "0"]
    )
    assert not (tmp_path / "none" / "exp" / "calib_id.txt").exists()

"""Same-person calibration at export: cross-modal pairs of held-out ids, fitted and stored in both model cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.calibration import ScoreCalibration
from common.modality import Modality
from common.model_card import ModelCard, encoder_filename
from model.config import NetConfig
from model.net import VIReIDNet
from tests.training.conftest import write_synth_set
from training.calibration import cross_modal_pair_scores, embedded_pairs, fit_score_calibration
from training.calibration_report import main as report_main
from training.calibration_report import markdown, reliability
from training.checkpoint import save_checkpoint
from training.config import DataConfig, ExperimentConfig
from training.data.base import DatasetLayoutError
from training.data.sysu import identity_samples
from training.export_cli import main
from training.synth import SynthConfig

NET = NetConfig(arch="resnet18", num_classes=4, num_stripes=1, input_height=32, input_width=16)
SMALL = SynthConfig(ids=10, train_ids=8, images_per_cam=1, height=32, width=16, seed=3, calib_ids=3)


def read_card(path: Path) -> ModelCard:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


def test_pair_scores_split_same_and_different_identities() -> None:
    ir = np.array([[1.0, 0.0], [0.0, 1.0]])
    vis = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    pos, neg = cross_modal_pair_scores(ir, np.array([1, 2]), vis, np.array([1, 1, 2]))
    np.testing.assert_allclose(np.sort(pos), [0.6, 1.0, 1.0])
    np.testing.assert_allclose(np.sort(neg), [0.0, 0.0, 0.8])


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synth_set(tmp_path_factory, SMALL)


def test_fit_uses_the_calibration_ids_only(small_set: Path) -> None:
    torch.manual_seed(0)
    net = VIReIDNet(NET).eval()
    cal = fit_score_calibration(net, DataConfig(name="sysu_mm01", root=small_set), small_set)
    visible, infrared = identity_samples(small_set, [11, 12, 13])
    n_vis = {pid: sum(s.pid == pid for s in visible) for pid in (11, 12, 13)}
    assert cal.identities == 3
    assert cal.positives == sum(2 * n for n in n_vis.values())  # 2 infrared images per id (cams 3, 6)
    assert cal.positives + cal.negatives == len(visible) * len(infrared) == len(visible) * 6
    pos, neg, ids = embedded_pairs(net, visible, infrared, torch.device("cpu"))
    assert cal.negative_scores[0] == pytest.approx(float(neg.max()), abs=1e-6) and ids == 3
    # Held-out val ids instead when the model was trained without them.
    held = fit_score_calibration(net, DataConfig(name="sysu_mm01", root=small_set, hold_out_val=True), small_set)
    assert held.identities == 2  # train_ids=8: a quarter of them are val ids
    with pytest.raises(ValueError, match="SYSU-MM01-layout"):
        fit_score_calibration(net, DataConfig(name="regdb", root=small_set), small_set)
    (small_set / "exp" / "calib_id.txt").rename(small_set / "exp" / "calib_id.moved")
    try:
        with pytest.raises(DatasetLayoutError, match="hold_out_val"):
            fit_score_calibration(net, DataConfig(name="sysu_mm01", root=small_set), small_set)
    finally:
        (small_set / "exp" / "calib_id.moved").rename(small_set / "exp" / "calib_id.txt")


@pytest.mark.slow
def test_export_cli_stores_one_calibration_in_both_cards(
    small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    net = VIReIDNet(NET).eval()
    experiment = ExperimentConfig(experiment="cal", model=NET, data=DataConfig(name="sysu_mm01", root=small_set))
    checkpoint = save_checkpoint(tmp_path / "run", {"model": net.state_dict()}, experiment, 1, False)
    main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m"), "--score-calibration", str(small_set)])
    cards = {m: read_card(tmp_path / "m" / encoder_filename(m)) for m in Modality}
    vis, ir = cards[Modality.VISIBLE].calibration, cards[Modality.INFRARED].calibration
    assert vis is not None and vis == ir
    assert vis == fit_score_calibration(net, experiment.data, small_set)  # the export embeds as the graphs do
    main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "plain")])
    assert read_card(tmp_path / "plain" / encoder_filename(Modality.VISIBLE)).calibration is None
    # The report measures that calibration on the test identities.
    capsys.readouterr()
    png = tmp_path / "img" / "reliability.png"
    report_main(["--checkpoint", str(checkpoint), "--model-dir", str(tmp_path / "m"), "--out", str(png)])
    assert png.read_bytes().startswith(b"\x89PNG")
    visible, infrared = identity_samples(
        small_set, [int(i) for i in (small_set / "exp" / "test_id.txt").read_text().split(",")]
    )
    pos, neg, _ = embedded_pairs(net, visible, infrared, torch.device("cpu"))
    assert capsys.readouterr().out == markdown(reliability(vis, pos, neg, 0.01), vis) + "\n"
    with pytest.raises(SystemExit, match="no score calibration"):
        report_main(["--checkpoint", str(checkpoint), "--model-dir", str(tmp_path / "plain"), "--out", str(png)])


def test_reliability_bins_by_hand() -> None:
    # Knots: p = 0 at score 0.0, 0.5 at 0.5, 1 at 1.0 (linear in between); FAR tail: negatives 0.6, 0.4, 0.2, 0.1.
    cal = ScoreCalibration(
        scores=(0.0, 0.5, 1.0),
        probabilities=(0.0, 0.5, 1.0),
        negative_ranks=(1, 2, 3, 4),
        negative_scores=(0.6, 0.4, 0.2, 0.1),
        positives=2,
        negatives=4,
        identities=2,
    )
    pos, neg = np.array([0.95, 0.55, 0.15], dtype=np.float32), np.array([0.45, 0.05, 0.12], dtype=np.float32)
    report = reliability(cal, pos, neg, far=0.3, bins=2)
    assert [(b.pairs, b.observed) for b in report.bins] == [(4, 0.25), (2, 1.0)]
    assert report.bins[0].predicted == pytest.approx((0.15 + 0.45 + 0.05 + 0.12) / 4)
    assert report.bins[1].predicted == pytest.approx((0.95 + 0.55) / 2)
    expected_ece = (4 * abs(0.25 - report.bins[0].predicted) + 2 * abs(1.0 - report.bins[1].predicted)) / 6
    assert report.ece == pytest.approx(expected_ece)
    # FAR 0.3 of 4 calibration negatives allows 1 at or above the threshold: just above the 2nd largest (0.4).
    assert report.threshold == pytest.approx(0.4, abs=1e-6) and report.threshold > 0.4
    assert (report.measured_far, report.measured_tar) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert "| 0.0–0.5 | 4 |" in markdown(report, cal)

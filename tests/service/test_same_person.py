"""Same-person verdicts through the real app: p_same and same_person on cross-modal matches of a calibrated model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from common.calibration import ScoreCalibration
from common.modality import Modality
from common.model_card import encoder_filename
from service.encoder import EncoderMismatchError
from service.settings import Settings
from tests.conftest import ExportedModels
from tests.service.conftest import TinyModels
from tests.service.support import serve, set_card, with_settings

pytestmark = pytest.mark.anyio
FAR = 0.05


@dataclass(frozen=True)
class Calibrated:
    """A copy of the tiny models whose cards carry a calibration fitted on their own features, and the crops."""

    model_dir: Path
    calibration: ScoreCalibration
    visible: list[Path]  # cam1 crop of each calibration identity
    infrared: list[Path]  # cam3 crop of each calibration identity


@pytest.fixture(scope="module")
def calibrated(
    tiny_models: TinyModels, tiny_exported: ExportedModels, tmp_path_factory: pytest.TempPathFactory
) -> Calibrated:
    """Fit a calibration with ``training.calibration`` on a small synthetic set and store it in both cards."""
    from training.calibration import fit_score_calibration
    from training.config import DataConfig
    from training.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("same_person") / "synth"
    summary = generate(root, SynthConfig(ids=5, train_ids=4, images_per_cam=1, seed=7, calib_ids=6))
    net = tiny_exported.graphs[Modality.VISIBLE].net
    calibration = fit_score_calibration(net, DataConfig(name="sysu_mm01", root=root), root)
    model_dir = tiny_models.copy_to(tmp_path_factory.mktemp("calibrated_models"))
    for m in Modality:
        set_card(model_dir / encoder_filename(m), replace(tiny_models.cards[m], calibration=calibration))
    crops = {cam: [root / f"cam{cam}" / f"{pid:04d}" / "0001.jpg" for pid in summary.calib_ids] for cam in (1, 3)}
    return Calibrated(model_dir, calibration, crops[1], crops[3])


def _files(paths: list[Path], field: str = "files") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


async def test_cross_modal_matches_carry_the_calibrated_probability_and_verdict(
    settings: Settings, calibrated: Calibrated
) -> None:
    cal = calibrated.calibration
    async with serve(with_settings(settings, model_dir=calibrated.model_dir, same_person_far=FAR)) as (_, client):
        ready = (await client.get("/readyz")).json()["same_person"]
        assert ready == {
            "calibrated": True,
            "far": FAR,
            "threshold": cal.threshold(FAR),
            "identities": 6,
            "positive_pairs": cal.positives,
            "negative_pairs": cal.negatives,
        }
        vis_ids = (await client.post("/gallery", params={"modality": "vis"}, files=_files(calibrated.visible))).json()
        ir_ids = (
            await client.post("/gallery", params={"modality": "ir"}, files=_files(calibrated.infrared[1:]))
        ).json()
        query = _files(calibrated.infrared[:1], field="file")
        r = await client.post("/search", params={"modality": "ir", "target": "any", "top_k": 20}, files=query)
    assert r.status_code == 200, r.text
    matches = r.json()["matches"]
    assert len(matches) == len(vis_ids["ids"]) + len(ir_ids["ids"])
    cross = [m for m in matches if m["metadata"]["modality"] == "vis"]
    same = [m for m in matches if m["metadata"]["modality"] == "ir"]
    assert len(cross) == 6 and len(same) == 5
    assert all(m["p_same"] is None and m["same_person"] is None for m in same)  # the calibration is cross-modal
    scores = np.array([m["score"] for m in cross])
    np.testing.assert_allclose([m["p_same"] for m in cross], cal.p_same(scores), atol=1e-12)
    assert [m["same_person"] for m in cross] == [bool(s >= cal.threshold(FAR)) for s in scores]
    p = [m["p_same"] for m in cross]
    assert p == sorted(p, reverse=True) and 0.0 <= min(p) and max(p) <= 1.0  # non-increasing down the list


async def test_the_far_setting_moves_the_threshold(settings: Settings, calibrated: Calibrated) -> None:
    cal = calibrated.calibration
    thresholds = []
    for far in (0.001, 0.5):
        async with serve(with_settings(settings, model_dir=calibrated.model_dir, same_person_far=far)) as (_, client):
            thresholds.append((await client.get("/readyz")).json()["same_person"]["threshold"])
    assert thresholds == [cal.threshold(0.001), cal.threshold(0.5)] and thresholds[0] > thresholds[1]
    with pytest.raises(ValidationError):
        with_settings(settings, same_person_far=0.0)
    with pytest.raises(ValidationError):
        with_settings(settings, same_person_far=1.0)


async def test_an_uncalibrated_model_leaves_both_null(settings: Settings, calibrated: Calibrated) -> None:
    async with serve(settings) as (_, client):
        assert (await client.get("/readyz")).json()["same_person"] == {
            "calibrated": False,
            "far": 0.01,
            "threshold": None,
            "identities": None,
            "positive_pairs": None,
            "negative_pairs": None,
        }
        await client.post("/gallery", params={"modality": "vis"}, files=_files(calibrated.visible))
        r = await client.post("/search", params={"modality": "ir"}, files=_files(calibrated.infrared[:1], field="file"))
    matches = r.json()["matches"]
    assert len(matches) == 6 and all(m["p_same"] is None and m["same_person"] is None for m in matches)


async def test_encoders_with_different_calibrations_are_refused(
    settings: Settings, tiny_models: TinyModels, calibrated: Calibrated, tmp_path: Path
) -> None:
    mixed = tiny_models.copy_to(tmp_path / "mixed")  # infrared card without the calibration
    vis = encoder_filename(Modality.VISIBLE)
    (mixed / vis).write_bytes((calibrated.model_dir / vis).read_bytes())
    with pytest.raises(EncoderMismatchError, match="different score calibrations"):
        async with serve(with_settings(settings, model_dir=mixed)):
            pass

"""RegDB's ten-trial command on a fake RegDB tree (two trials): one run per trial, mean ± std of both directions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.training.conftest import write_regdb_tree
from tests.training.test_train import TINY
from training.checkpoint import load_checkpoint
from training.regdb_trials import base_name, main


def test_two_trials_are_trained_evaluated_and_summarised(tmp_path: Path) -> None:
    write_regdb_tree(tmp_path / "RegDB")
    raw = {
        **TINY,
        "experiment": "regdb-tiny-trial1",
        "data": {**TINY["data"], "name": "regdb", "root": str(tmp_path / "RegDB"), "trial": 1},
        "run": {**TINY["run"], "out_dir": str(tmp_path / "runs"), "max_iters": 1},
        "schedule": {**TINY["schedule"], "epochs": 1},
    }
    config = tmp_path / "regdb.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main([str(config), "--trials", "1", "2", "--out", str(tmp_path / "report")]) == 0

    for trial in (1, 2):
        ckpt = load_checkpoint(tmp_path / "runs" / f"regdb-tiny-trial{trial}" / "checkpoint.pt")
        assert ckpt["config"]["data"]["trial"] == trial and ckpt["epoch"] == 1
    report = json.loads((tmp_path / "report" / "trials.json").read_text())
    assert report["trials"] == [1, 2] and report["unit"] == "percent"
    per_trial = report["per_trial"]
    assert set(per_trial["1"]) == {"regdb/vis2ir", "regdb/ir2vis"}
    for direction in ("regdb/vis2ir", "regdb/ir2vis"):
        for flip in ("no_flip", "flip"):
            for metric in ("R1", "R10", "mAP", "mINP"):
                values = [per_trial[t][direction][flip][metric] for t in ("1", "2")]
                summary = report["summary"][direction][flip][metric]
                assert summary["mean"] == pytest.approx(np.mean(values))
                assert summary["std"] == pytest.approx(np.std(values, ddof=1))
                assert all(0 <= v <= 100 for v in values)
    # the two trials test disjoint identities with different models: their results differ somewhere
    assert per_trial["1"] != per_trial["2"]
    table = (tmp_path / "report" / "trials.md").read_text()
    assert "| regdb/vis2ir | no_flip |" in table and "| regdb/ir2vis | flip |" in table and " ± " in table
    # a second run without --resume refuses to overwrite; with --resume it reuses the finished runs
    assert main([str(config), "--trials", "1", "--out", str(tmp_path / "again")]) == 2
    assert main([str(config), "--trials", "1", "--out", str(tmp_path / "again"), "--resume"]) == 0
    again = json.loads((tmp_path / "again" / "trials.json").read_text())
    assert again["per_trial"]["1"] == per_trial["1"]


def test_bad_trials_and_non_regdb_configs_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "sysu.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "root": str(tmp_path)}}))
    assert main([str(config), "--trials", "1"]) == 2
    assert main([str(config), "data.name=regdb", "--trials", "0", "11"]) == 2
    assert base_name("regdb-hagl-amg-p4-trial1") == "regdb-hagl-amg-p4" and base_name("regdb") == "regdb"

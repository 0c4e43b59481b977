"""build_dataset: the config's ``data.name`` picks the reader, with the config's trial settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import FakeLLCM, FakeRegDB, FakeSYSU
from training.config import DataConfig
from training.data.base import DatasetLayoutError, EvalSplit
from training.data.datasets import build_dataset
from training.data.llcm import LLCM
from training.data.regdb import RegDB
from training.data.sysu import SYSUMM01


def test_each_name_builds_its_reader(sysu_tree: FakeSYSU, regdb_tree: FakeRegDB, llcm_tree: FakeLLCM) -> None:
    sysu = build_dataset(DataConfig(name="sysu_mm01", root=sysu_tree.root, num_trials=3))
    assert isinstance(sysu, SYSUMM01) and sysu.num_trials == 3
    regdb = build_dataset(DataConfig(name="regdb", root=regdb_tree.root, trial=2))
    assert isinstance(regdb, RegDB) and regdb.trial == 2
    llcm = build_dataset(DataConfig(name="llcm", root=llcm_tree.root, num_trials=2))
    assert isinstance(llcm, LLCM) and llcm.num_trials == 2


def test_a_missing_root_is_a_layout_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="root not found"):
        build_dataset(DataConfig(name="llcm", root=tmp_path / "absent"))


def test_splits_carry_protocol_setting_and_trial(
    sysu_tree: FakeSYSU, regdb_tree: FakeRegDB, llcm_tree: FakeLLCM
) -> None:
    sysu = SYSUMM01(sysu_tree.root, num_trials=2).eval_splits()
    assert [(s.protocol, s.setting, s.trial) for s in sysu] == [
        ("sysu", mode, trial) for mode in ("all", "indoor") for trial in range(2)
    ]
    regdb = RegDB(regdb_tree.root, trial=2).eval_splits()
    assert [(s.protocol, s.setting, s.trial) for s in regdb] == [("regdb", "vis2ir", 2), ("regdb", "ir2vis", 2)]
    llcm = LLCM(llcm_tree.root, num_trials=1).eval_splits()
    assert [(s.protocol, s.setting, s.trial) for s in llcm] == [("llcm", "ir2vis", 0), ("llcm", "vis2ir", 0)]
    assert [(s.group, s.name) for s in sysu[1:3]] == [
        ("sysu/all", "sysu/all/trial1"),
        ("sysu/indoor", "sysu/indoor/trial0"),
    ]


def test_a_split_names_a_known_protocol() -> None:
    split = EvalSplit("regdb", "ir2vis", 7, (), ())
    assert (split.group, split.name) == ("regdb/ir2vis", "regdb/ir2vis/trial7")
    with pytest.raises(ValueError, match="no evaluation protocol 'market' for split market/all/trial0"):
        EvalSplit("market", "all", 0, (), ())  # type: ignore[arg-type]

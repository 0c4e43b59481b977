"""Experiment config: YAML + dotted overrides, unknown keys, round trip through the run directory's config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, load_config, save_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


BASE = "experiment: t\ndata: {name: sysu_mm01, root: /data/sysu}\nmodel: {arch: resnet18, num_stripes: 2}\n"


def test_defaults_are_the_drafts_recipe(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE))
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.nesterov) == (0.1, 0.9, 5e-4, True)
    assert cfg.optim.backbone_lr_mult == 0.1
    assert (cfg.loss.id_weight, cfg.loss.triplet_weight, cfg.loss.dcl_weight) == (1.0, 1.0, 0.5)
    assert (cfg.loss.label_smoothing, cfg.loss.margin) == (0.1, 0.3)
    assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (4, 4)
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs, cfg.schedule.milestones) == (80, 10, (20, 60))
    assert cfg.augment.erasing_p == 0.5 and cfg.augment.pad_crop and cfg.augment.flip
    assert cfg.model.arch == "resnet18" and cfg.model.num_stripes == 2
    assert cfg.run_dir == Path("runs/t")


def test_overrides_are_parsed_as_yaml_scalars(tmp_path: Path) -> None:
    overrides = [
        "optim.lr=0.05",
        "run.pretrained=null",
        "model.hagl=false",
        "schedule.milestones=[5, 9]",
        "data.root=/other",
        "run.eval_every=3",
    ]
    cfg = load_config(_write(tmp_path, BASE + "run: {pretrained: w.pth}\n"), overrides)
    assert cfg.optim.lr == 0.05
    assert cfg.run.pretrained is None
    assert cfg.model.hagl is False
    assert cfg.schedule.milestones == (5, 9)
    assert cfg.data.root == Path("/other")
    assert cfg.run.eval_every == 3


@pytest.mark.parametrize(
    ("text", "overrides", "bad_key", "a_valid_key"),
    [
        (BASE, ["optim.lrr=0.1"], "optim.lrr", "optim.lr"),
        (BASE, ["model.stripes=2"], "model.stripes", "model.num_stripes"),
        (BASE + "sampler: {ids: 8}\n", [], "sampler.ids", "sampler.num_ids"),
        (BASE + "trainer: {x: 1}\n", [], "trainer", "schedule.epochs"),
    ],
)
def test_unknown_key_is_one_clear_error(
    tmp_path: Path, text: str, overrides: list[str], bad_key: str, a_valid_key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), overrides)
    message = str(info.value)
    assert f"unknown config key {bad_key};" in message
    assert a_valid_key in message


def test_invalid_value_and_malformed_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.name|name"):
        load_config(_write(tmp_path, BASE), ["data.name=market"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(_write(tmp_path, BASE), ["optim.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE))
    with pytest.raises(Exception, match="frozen"):
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE), ["optim.lr=0.02", "run.pretrained=/w/r18.pth"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.experiment

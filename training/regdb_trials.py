"""RegDB's ten trials: train and evaluate one model per identity split and report mean ± std, as the papers do.

``python -m training.regdb_trials configs/regdb.yaml data.root=/data/RegDB [--trials 1 2 3] [--resume]``
trains ``<experiment>-trial<t>`` for each trial t (default 1..10; the config's trailing ``-trial<n>`` is replaced),
evaluates both directions (visible->thermal, thermal->visible; with and without flip averaging) on the trial's
test ids, and writes ``trials.json`` (per trial and summary) and ``trials.md`` (a table of mean ± std in percent)
into ``--out`` (default ``run.out_dir/<experiment>-trials``). The std is the sample standard deviation over the
trials (ddof = 1; 0 for a single trial). Under torchrun every rank trains and rank 0 evaluates.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.checkpoint import checkpoint_hash, load_model
from training.config import ConfigError, ExperimentConfig, load_config
from training.data.regdb import TRIALS
from training.distributed import DistInfo, wait_for_main
from training.evaluate import evaluate_checkpoint, to_percent
from training.features import Progress
from training.train import cli_progress, fit, run_distributed, seed_everything

logger = logging.getLogger(__name__)

Results = dict[str, dict[str, dict[str, float]]]  # {setting: {"no_flip"|"flip": {metric: value}}}
METRICS = ("R1", "R5", "R10", "R20", "mAP", "mINP")


def base_name(experiment: str) -> str:
    """The experiment name without a trailing ``-trial<n>`` (``regdb-p4-trial1`` -> ``regdb-p4``)."""
    return re.sub(r"-trial\d+$", "", experiment)


def trial_config(config: Path, overrides: Sequence[str], trial: int) -> ExperimentConfig:
    """The config of one trial: ``data.trial=<t>``, experiment ``<base>-trial<t>``.

    Raises:
        ConfigError: the config is invalid or is not a RegDB experiment.
    """
    cfg = load_config(config, [*overrides, f"data.trial={trial}"])
    if cfg.data.name != "regdb":
        raise ConfigError(f"{config} trains on {cfg.data.name}; the ten-trial protocol is RegDB's (data.name: regdb)")
    return cfg.model_copy(update={"experiment": f"{base_name(cfg.experiment)}-trial{trial}"})


def summarise(per_trial: dict[int, Results]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{setting: {flip: {metric: {"mean", "std"}}}}`` over the trials (sample std, ddof = 1; 0 for one trial)."""
    first = next(iter(per_trial.values()))
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for group, by_flip in first.items():
        for flip, metrics in by_flip.items():
            for metric in metrics:
                values = np.array([r[group][flip][metric] for r in per_trial.values()], dtype=np.float64)
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                summary.setdefault(group, {}).setdefault(flip, {})[metric] = {"mean": float(values.mean()), "std": std}
    return summary


def markdown_table(summary: dict[str, dict[str, dict[str, dict[str, float]]]], trials: Sequence[int]) -> str:
    """A markdown table of mean ± std per setting and flip mode (values as given, e.g. percent)."""
    lines = [
        f"RegDB, trials {', '.join(str(t) for t in trials)}: mean ± std (percent, sample std over the trials)",
        "",
        "| direction | flip | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for group, by_flip in summary.items():
        for flip, metrics in by_flip.items():
            cells = [f"{metrics[m]['mean']:.2f} ± {metrics[m]['std']:.2f}" for m in METRICS if m in metrics]
            lines.append(f"| {group} | {flip} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_trial(
    cfg: ExperimentConfig, info: DistInfo, resume: bool, progress: Progress | None
) -> tuple[Path, Results | None]:
    """Train one trial (or continue it with ``resume``) and, on rank 0, evaluate it; returns the checkpoint path."""
    seed_everything(cfg.run.seed)
    checkpoint = fit(cfg, info, resume=resume, progress=progress)
    results: Results | None = None
    if info.is_main:
        net, trained_cfg = load_model(checkpoint)
        results = evaluate_checkpoint(
            net, [trained_cfg.data], cfg.run.device, cfg.data.eval_batch_size, cfg.data.workers, progress is not None
        )
    wait_for_main(info)
    return checkpoint, results


def write_report(out: Path, trials: Sequence[int], checkpoints: dict[int, Path], per_trial: dict[int, Results]) -> None:
    """``trials.json`` (per trial in percent, summary, checkpoints) and ``trials.md`` (the summary table)."""
    percent = {t: to_percent(r) for t, r in per_trial.items()}
    summary = summarise(percent)
    report = {
        "protocol": "regdb",
        "trials": list(trials),
        "unit": "percent",
        "std": "sample standard deviation over the trials (ddof=1)",
        "checkpoints": {str(t): str(p) for t, p in checkpoints.items()},
        "model_versions": {str(t): checkpoint_hash(p) for t, p in checkpoints.items()},
        "per_trial": {str(t): r for t, r in percent.items()},
        "summary": summary,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "trials.md").write_text(markdown_table(summary, trials))
    logger.info("wrote %s and %s", out / "trials.json", out / "trials.md")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments: a RegDB config, dotted overrides, the trials, ``--out`` and ``--resume``."""
    parser = argparse.ArgumentParser(prog="python -m training.regdb_trials", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="RegDB experiment YAML, e.g. configs/regdb.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=/data/RegDB")
    parser.add_argument("--trials", type=int, nargs="+", default=list(TRIALS), help="trials to run (default 1..10)")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default RUN_OUT/<base>-trials)")
    parser.add_argument("--resume", action="store_true", help="continue (or reuse) each trial's existing run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: train and evaluate each trial, then write the mean ± std report."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bad = sorted(set(args.trials) - set(TRIALS))
    try:
        if bad:
            raise ConfigError(f"RegDB trials are 1..10, got {bad}")
        configs = {t: trial_config(args.config, args.overrides, t) for t in dict.fromkeys(args.trials)}
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    first = next(iter(configs.values()))

    def trials(info: DistInfo) -> None:
        progress = cli_progress(info)
        checkpoints: dict[int, Path] = {}
        per_trial: dict[int, Results] = {}
        for trial, cfg in configs.items():
            checkpoints[trial], results = run_trial(cfg, info, args.resume, progress)
            if results is not None:
                per_trial[trial] = results
        if info.is_main:
            out = args.out or first.run.out_dir / f"{base_name(first.experiment)}-trials"
            write_report(out, list(configs), checkpoints, per_trial)
            sys.stdout.write(markdown_table(summarise({t: to_percent(r) for t, r in per_trial.items()}), list(configs)))

    return run_distributed(first, trials)


if __name__ == "__main__":
    sys.exit(main())

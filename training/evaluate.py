"""Evaluation CLI: community protocols on a checkpoint, with and without flip averaging.

``python -m training.evaluate --checkpoint runs/sysu-hagl-amg-p4/checkpoint.pt --out results.json``
evaluates the checkpoint's own data set; ``--data sysu_mm01=/data/SYSU-MM01 --data regdb=/data/RegDB`` picks
others (SYSU-MM01: all-search and indoor, ``--trials`` random galleries; RegDB: visible->infrared and
infrared->visible on ``--regdb-trial``). Prints a table and writes JSON with R1/R5/R10/R20/mAP/mINP in percent.
``--rerank`` adds rows with k-reciprocal re-ranking (``index.kreciprocal``) beside the plain ones; ``--tracklet K``
makes each query the fusion of K crops of one identity from one camera (``training.eval_loop.tracklets``).
``--onnx DIR`` scores the exported encoders in DIR (ONNX Runtime, any precision or projection) instead of the
checkpoint's torch network, on the same splits (flip mode ``onnx``: whatever the export baked in).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from index.kreciprocal import K1, K2, LAMBDA, KReciprocalParams
from model.net import VIReIDNet
from training.checkpoint import CheckpointError, checkpoint_hash, load_model
from training.config import DataConfig, ExperimentConfig
from training.data.base import DatasetLayoutError, EvalSplit
from training.data.datasets import build_dataset
from training.distributed import resolve_device
from training.eval_loop import Scoring, embed_splits, evaluate_splits, score_splits
from training.features import embed_samples
from training.plots import write_plots

logger = logging.getLogger(__name__)

FLIP_SETTINGS = {"no_flip": False, "flip": True}
RERANK_SUFFIX = "+rerank"


def data_configs(
    cfg: ExperimentConfig, specs: list[str], trials: int | None, regdb_trial: int | None
) -> list[DataConfig]:
    """Data sets to evaluate: ``NAME=ROOT`` specs, or the checkpoint's own data set when none is given."""
    base = cfg.data
    if not specs:
        chosen = [base]
    else:
        chosen = []
        for spec in specs:
            name, sep, root = spec.partition("=")
            if not sep or not root:
                raise ValueError(f"--data {spec!r}: expected NAME=ROOT, e.g. sysu_mm01=/data/SYSU-MM01")
            chosen.append(DataConfig.model_validate({**base.model_dump(), "name": name, "root": root}))
    updates: dict[str, Any] = {}
    if trials is not None:
        updates["num_trials"] = trials
    if regdb_trial is not None:
        updates["trial"] = regdb_trial
    return [d.model_copy(update=updates) for d in chosen]


def evaluate_checkpoint(
    net: VIReIDNet,
    data: list[DataConfig],
    device_kind: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    show_progress: bool = False,
    scoring: Scoring | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{setting: {"no_flip"|"flip": {"R1", ..., "mINP"}}}`` fractions, each setting averaged over its trials.

    With ``scoring.rerank`` set, ``"no_flip+rerank"`` and ``"flip+rerank"`` are added from the same embeddings.
    """
    plain = scoring or Scoring()
    variants = {"": replace(plain, rerank=None)}
    if plain.rerank is not None:
        variants[RERANK_SUFFIX] = plain
    device = resolve_device(device_kind)  # type: ignore[arg-type]
    net.to(device).eval()
    progress = (lambda it, desc: tqdm(it, desc=desc, leave=False)) if show_progress else None
    loader: dict[str, Any] = {"batch_size": batch_size, "workers": workers, "progress": progress}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for data_cfg in data:
        splits = build_dataset(data_cfg).eval_splits()
        for key, flip in FLIP_SETTINGS.items():
            features = embed_splits(splits, partial(embed_samples, net, device=device, flip=flip, **loader))
            for suffix, how in variants.items():
                for group, metrics in score_splits(features, splits, how).items():
                    results.setdefault(group, {})[key + suffix] = metrics
    return results


def write_evaluation_plots(
    net: VIReIDNet,
    data: list[DataConfig],
    out_dir: Path,
    device_kind: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
) -> list[Path]:
    """CMC curves (all settings of all data sets in one ``cmc.png``) and a ranked-list figure per setting."""
    device = resolve_device(device_kind)  # type: ignore[arg-type]
    net.to(device).eval()
    split_dists: list[tuple[EvalSplit, np.ndarray]] = []
    for data_cfg in data:
        splits = build_dataset(data_cfg).eval_splits()
        evaluate_splits(net, splits, device, False, batch_size, workers, distances=split_dists)
    paths = write_plots(split_dists, out_dir, title="CMC (no flip)")
    logger.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def evaluate_onnx(
    model_dir: Path, data: list[DataConfig], batch_size: int = 64, scoring: Scoring | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """``{setting: {"onnx"[+rerank]: {"R1", ..., "mINP"}}}``: the encoders of ``model_dir`` scored on ``data``."""
    from training.onnx_features import OnnxEmbedder

    plain = scoring or Scoring()
    variants = {"": replace(plain, rerank=None)}
    if plain.rerank is not None:
        variants[RERANK_SUFFIX] = plain
    embedder = OnnxEmbedder(model_dir, batch_size)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for data_cfg in data:
        splits = build_dataset(data_cfg).eval_splits()
        features = embed_splits(splits, embedder.embed)
        for suffix, how in variants.items():
            for group, metrics in score_splits(features, splits, how).items():
                results.setdefault(group, {})["onnx" + suffix] = metrics
    return results


def to_percent(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """The same nesting with every metric as a percentage rounded to 2 decimals (for reports)."""
    return {g: {k: {m: round(100 * v, 2) for m, v in ms.items()} for k, ms in fs.items()} for g, fs in results.items()}


def format_table(percent: dict[str, dict[str, dict[str, float]]]) -> str:
    """A fixed-width text table: one row per setting and flip mode."""
    width = max([9, *(len(key) + 1 for by_flip in percent.values() for key in by_flip)])
    header = f"{'setting':<18}{'flip':<{width}}" + "".join(f"{m:>8}" for m in ("R1", "R5", "R10", "R20", "mAP", "mINP"))
    lines = [header, "-" * len(header)]
    for group, by_flip in percent.items():
        for key, metrics in by_flip.items():
            lines.append(
                f"{group:<18}{key:<{width}}"
                + "".join(f"{metrics.get(m, float('nan')):>8.2f}" for m in ("R1", "R5", "R10", "R20", "mAP", "mINP"))
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments of the evaluation CLI."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="RUN_DIR/checkpoint.pt")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=ROOT",
        help="data set to evaluate (repeatable): sysu_mm01=..., regdb=..., llcm=...",
    )
    parser.add_argument("--trials", type=int, default=None, help="SYSU-MM01/LLCM random galleries (default 10)")
    parser.add_argument("--regdb-trial", type=int, default=None, help="RegDB split 1..10")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="evaluate a random-init network of the checkpoint's config (seeded with run.seed): the baseline",
    )
    parser.add_argument(
        "--rerank",
        action="store_true",
        help=f"also report k-reciprocal re-ranking (k1={K1}, k2={K2}, lambda={LAMBDA}; Zhong et al. 2017)",
    )
    parser.add_argument(
        "--rerank-candidates", type=int, default=100, help="re-rank each query's best N (default %(default)s)"
    )
    parser.add_argument(
        "--tracklet", type=int, default=1, metavar="K", help="fuse K crops of one identity and camera per query"
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        metavar="DIR",
        help="write CMC curves and ranked-list figures (PNG) here (embeds the images once more, without flip)",
    )
    parser.add_argument("--onnx", type=Path, default=None, help="evaluate the exported encoders in this directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exits with status 2 and one error line on a missing checkpoint or data set."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        net, cfg = load_model(args.checkpoint)
        if args.untrained:
            torch.manual_seed(cfg.run.seed)
            net = VIReIDNet(cfg.model)
        data = data_configs(cfg, args.data, args.trials, args.regdb_trial)
        scoring = Scoring(args.tracklet, KReciprocalParams() if args.rerank else None, args.rerank_candidates)
        if args.onnx is not None:
            results = evaluate_onnx(args.onnx, data, args.batch_size, scoring)
        else:
            results = evaluate_checkpoint(
                net, data, args.device, args.batch_size, args.workers, sys.stderr.isatty(), scoring
            )
        if args.plots is not None:
            write_evaluation_plots(net, data, args.plots, args.device, args.batch_size, args.workers)
    except (CheckpointError, DatasetLayoutError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    percent = to_percent(results)
    report = {
        "checkpoint": str(args.checkpoint),
        "model_version": checkpoint_hash(args.checkpoint),
        "experiment": cfg.experiment,
        "weights": "random init (--untrained)" if args.untrained else "checkpoint",
        "onnx": str(args.onnx) if args.onnx is not None else None,
        "data": [{"name": d.name, "root": str(d.root), "trial": d.trial, "num_trials": d.num_trials} for d in data],
        "tracklet": args.tracklet,
        "rerank": {"k1": K1, "k2": K2, "lambda": LAMBDA, "candidates": args.rerank_candidates} if args.rerank else None,
        "unit": "percent",
        "results": percent,
    }
    sys.stdout.write(format_table(percent) + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

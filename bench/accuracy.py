"""Accuracy cost of the fast and small encoders: fp32, int8, fp16 and PCA-projected exports, scored by ONNX Runtime.

Usage: ``python bench/accuracy.py --checkpoint runs/tiny/checkpoint.pt [--dims 512 256] [--whiten-dim 256]``

Exports the checkpoint once per variant (``training.export.export_model``: int8 calibrated on the training ids'
crops of the checkpoint's data set, agreement on its test ids; projections fitted on the training ids'
embeddings) and evaluates each exported directory on the checkpoint's evaluation splits with
``training.evaluate.evaluate_onnx`` (the ONNX graphs, not torch). Prints Rank-1 and mAP per setting and the
difference to fp32 at the full dimension, all from this one run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from training.checkpoint import checkpoint_hash, load_model
from training.crops import dataset_crops
from training.data.datasets import build_dataset
from training.evaluate import data_configs, evaluate_onnx
from training.export import ExportOptions, export_model
from training.projection import Projection, fit_pca, training_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dims", type=int, nargs="*", default=[512, 256], help="PCA dimensions to try")
    parser.add_argument("--whiten-dim", type=int, nargs="*", default=[256], help="whitened PCA dimensions to try")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8", "fp16"])
    parser.add_argument("--trials", type=int, default=None, help="SYSU-MM01 random galleries (default: the config's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    net, cfg = load_model(args.checkpoint)
    net.eval()
    data = data_configs(cfg, [], args.trials, None)
    crops = dataset_crops(Path(cfg.data.root), cfg.model.input_height, cfg.model.input_width)
    dataset = build_dataset(cfg.data)
    feats = training_features(net, [*dataset.train_visible, *dataset.train_infrared])
    variants: list[tuple[str, str, Projection | None]] = [(p, "full", None) for p in args.precisions]
    variants += [("fp32", f"pca {d}", fit_pca(feats, d)) for d in args.dims]
    variants += [("fp32", f"pca-whiten {d}", fit_pca(feats, d, whiten=True)) for d in args.whiten_dim]
    print(
        f"checkpoint={args.checkpoint} ({checkpoint_hash(args.checkpoint)}) experiment={cfg.experiment} "
        f"data={cfg.data.root} full dim={net.embedding_dim} projection fitted on {len(feats)} training images"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision, label, projection in variants:
            out = Path(tmp) / f"{precision}-{label.replace(' ', '-')}"
            export_model(
                net,
                out,
                precision=precision,
                crops=crops,
                min_cosine=0.0,
                model_version="accuracy",
                experiment=cfg.experiment,
                git_sha="bench",
                options=ExportOptions(projection=projection),
            )
            dim = projection.dim if projection is not None else net.embedding_dim
            rows.append((precision, label, dim, evaluate_onnx(out, data)))
    groups = list(rows[0][3])
    header = f"{'precision':<10}{'embedding':<16}{'dim':>6}" + "".join(
        f"{g + ' R1':>16}{g + ' mAP':>17}{'dR1':>7}{'dmAP':>7}" for g in groups
    )
    print(header)
    base = rows[0][3]
    for precision, label, dim, results in rows:
        cells = ""
        for g in groups:
            m, b = results[g]["onnx"], base[g]["onnx"]
            cells += f"{100 * m['R1']:>16.2f}{100 * m['mAP']:>17.2f}"
            cells += f"{100 * (m['R1'] - b['R1']):>+7.2f}{100 * (m['mAP'] - b['mAP']):>+7.2f}"
        print(f"{precision:<10}{label:<16}{dim:>6}{cells}", flush=True)


if __name__ == "__main__":
    main()

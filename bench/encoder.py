"""Embedding throughput: PyTorch eager vs ONNX Runtime (CPU) on the same network and images, as ratios.

Usage: ``python bench/encoder.py [--arch resnet50] [--height 384 --width 192] [--batches 1 8 32] [--repeats 5]``

Builds the default network (random init: speed does not depend on the weights), exports it with
``training.export.export_encoders`` (parity-checked), then times ``embed`` in eager mode and the ONNX graph on
CPUExecutionProvider, interleaving the two so that machine noise hits both alike. Prints images/s for each and the
ratio ORT/eager measured in this run.

``python bench/encoder.py --precision fp32 int8 [fp16] [--config configs/sysu.yaml]`` instead exports the seeded
untrained network of the config at each precision (``training.export.export_model``; int8 calibrated on synthetic
crops, which does not change speed) and times the ONNX graphs against each other, interleaved, on the best provider
this onnxruntime has (CUDA on a GPU host, else CPU): images/s per precision and the ratio to the first one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from common.providers import CPU_PROVIDER, CUDA_PROVIDER
from model.config import NetConfig
from model.net import VIReIDNet
from training.crops import synthetic_crops
from training.export import EncoderGraph, export_encoders, export_model, untrained_network

CALIBRATION_CROPS = 16


def time_interleaved(fns: list, repeats: int) -> list[float]:
    """Median seconds of each function over ``repeats`` rounds, calling them in turn (one warm-up call each)."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet34", "resnet18"])
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", nargs="+", choices=["fp32", "fp16", "int8"], help="compare ONNX precisions")
    parser.add_argument("--config", type=Path, default=Path("configs/sysu.yaml"), help="network for --precision")
    args = parser.parse_args()
    if args.precision:
        compare_precisions(args.config, args.precision, args.batches, args.repeats, args.threads)
        return

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = NetConfig(arch=args.arch, input_height=args.height, input_width=args.width)
    net = VIReIDNet(cfg).eval()
    modality = Modality.INFRARED
    graph = EncoderGraph(net, modality).eval()
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_encoders(net, Path(tmp), model_version="bench", experiment="bench", git_sha="bench")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(paths[modality]), opts, providers=[CPU_PROVIDER])
    print(
        f"arch={args.arch} input={args.height}x{args.width} dim={net.embedding_dim} threads={args.threads} "
        f"ort={ort.__version__} torch={torch.__version__} providers={session.get_providers()}"
    )
    print(f"{'batch':>5} {'eager img/s':>12} {'ort img/s':>10} {'ort/eager':>9}")
    for batch in args.batches:
        images = np.random.default_rng(batch).random((batch, 3, args.height, args.width), dtype=np.float32)
        tensor = torch.from_numpy(images)

        def eager(t: torch.Tensor = tensor) -> None:
            with torch.inference_mode():
                graph(t)

        def onnx(x: np.ndarray = images) -> None:
            session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: x})

        t_eager, t_ort = time_interleaved([eager, onnx], args.repeats)
        print(f"{batch:>5} {batch / t_eager:>12.2f} {batch / t_ort:>10.2f} {t_eager / t_ort:>9.2f}x")


def compare_precisions(config: Path, precisions: list[str], batches: list[int], repeats: int, threads: int) -> None:
    """Export the untrained network of ``config`` at each precision and print img/s and ratios to the first."""
    net, version, _ = untrained_network(config)
    cfg = net.cfg
    crops = synthetic_crops(cfg.input_height, cfg.input_width, CALIBRATION_CROPS, CALIBRATION_CROPS)
    providers = [p for p in (CUDA_PROVIDER, CPU_PROVIDER) if p in ort.get_available_providers()]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    modality = Modality.INFRARED
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            paths = export_model(
                net,
                Path(tmp) / precision,
                precision=precision,
                crops=crops,
                min_cosine=0.0,
                model_version=version,
                experiment="bench",
                git_sha="bench",
            )
            sessions[precision] = ort.InferenceSession(str(paths[modality]), opts, providers=providers)
    used = {p: s.get_providers()[0] for p, s in sessions.items()}
    print(
        f"config={config} arch={cfg.arch} input={cfg.input_height}x{cfg.input_width} dim={net.embedding_dim} "
        f"threads={threads} ort={ort.__version__} providers={used}"
    )
    first = precisions[0]
    header = "".join(f"{p + ' img/s':>12}" for p in precisions)
    ratios = "".join(f"{p + '/' + first:>12}" for p in precisions[1:])
    print(f"{'batch':>5}{header}{ratios}")
    for batch in batches:
        images = np.random.default_rng(batch).random((batch, 3, cfg.input_height, cfg.input_width), dtype=np.float32)
        fns = [
            lambda s=session, x=images: s.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: x}) for session in sessions.values()
        ]
        seconds = time_interleaved(fns, repeats)
        rates = "".join(f"{batch / t:>12.2f}" for t in seconds)
        rel = "".join(f"{seconds[0] / t:>11.2f}x" for t in seconds[1:])
        print(f"{batch:>5}{rates}{rel}", flush=True)


if __name__ == "__main__":
    main()

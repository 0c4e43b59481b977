"""Embedding throughput: PyTorch eager vs ONNX Runtime (CPU) on the same network and images, as ratios.

Usage: ``python bench/encoder.py [--arch resnet50] [--height 384 --width 192] [--batches 1 8 32] [--repeats 5]``

Builds the default network (random init: speed does not depend on the weights), exports it with
``training.export.export_encoders`` (parity-checked), then times ``embed`` in eager mode and the ONNX graph on
CPUExecutionProvider, interleaving the two so that machine noise hits both alike. Prints images/s for each and the
ratio ORT/eager measured in this run.
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
from common.providers import CPU_PROVIDER
from model.config import NetConfig
from model.net import VIReIDNet
from training.export import EncoderGraph, export_encoders


def _time_interleaved(fns: list, repeats: int) -> list[float]:
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
    args = parser.parse_args()

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

        t_eager, t_ort = _time_interleaved([eager, onnx], args.repeats)
        print(f"{batch:>5} {batch / t_eager:>12.2f} {batch / t_ort:>10.2f} {t_eager / t_ort:>9.2f}x")


if __name__ == "__main__":
    main()

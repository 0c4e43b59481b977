"""Where the encoder's time goes: our exported graph against a plain torchvision ResNet-50, per ONNX op type.

Usage: ``python -m bench.encoder_profile [--config configs/sysu.yaml] [--batch 8] [--repeats 5] [--precision ...]``

Exports two graphs at the config's input size, each the way ``training.export`` does it (dynamo exporter, the
same opset, [0, 1] images normalised inside the graph): the seeded untrained network of the config (its infrared
encoder: stems, shared stages, HAGL, GeM stripes, BNNecks, L2 normalisation) and a plain torchvision ResNet of
the same ``arch`` and ``last_stride`` ending in global average pooling, nothing else. With ``int8`` each graph is
also quantised the way the int8 export does it (``training.precision.quantize_qdq``, on synthetic crops).

Prints, from one run:
- per graph: multiply-accumulates per image (counted by ``torch.utils.flop_counter`` on the PyTorch module),
  images/s (all sessions timed interleaved, medians of ``--repeats`` rounds), and the ratios to the plain fp32
  ResNet: time ratio against arithmetic ratio, so overhead shows as the difference;
- per graph, ONNX Runtime's own kernel-time profile (``SessionOptions.enable_profiling``) summed by op type:
  convolutions (fused or quantised) against everything else.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from bench.encoder import time_interleaved
from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from common.providers import CPU_PROVIDER
from model.backbone import build_resnet
from model.config import NetConfig
from training.crops import synthetic_crops
from training.export import DEFAULT_OPSET, EncoderGraph, exporter_warnings_only, untrained_network
from training.precision import quantize_qdq

CONVOLUTIONS = ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcConv", "NchwcConv")
CALIBRATION_CROPS = 16


class PlainResNet(nn.Module):
    """``images in [0, 1] -> avgpool(resnet(normalise(images)))``: the reference graph, no layer of ours."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        net = build_resnet(cfg.arch, cfg.last_stride)
        self.body = nn.Sequential(*(getattr(net, n) for n in ("conv1", "bn1", "relu", "maxpool")))
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """Pooled ``(N, C)`` features of a batch of [0, 1] images."""
        return self.stages(self.body((images - self.mean) / self.std)).mean(dim=(2, 3))


@dataclass
class Graph:
    """One ONNX file under study, with the arithmetic of its PyTorch source."""

    name: str
    path: Path
    macs: float


def export_graph(module: nn.Module, path: Path, height: int, width: int) -> None:
    """Export ``module`` as ``training.export`` exports an encoder: dynamo, dynamic batch, ``DEFAULT_OPSET``."""
    example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), exporter_warnings_only():
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=4096)}},
            opset_version=DEFAULT_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def macs_per_image(module: nn.Module, height: int, width: int) -> float:
    """Multiply-accumulates of one forward pass on one image (half the counted FLOPs)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module.eval()(torch.rand(1, 3, height, width))
    return counter.get_total_flops() / 2


def session(path: Path, threads: int, profile_prefix: str | None = None) -> ort.InferenceSession:
    """A CPU session on ``path``, optionally writing ONNX Runtime's profile."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), opts, providers=[CPU_PROVIDER])


def op_profile(path: Path, images: np.ndarray, threads: int, runs: int, tmp: Path) -> Counter[str]:
    """Kernel microseconds per op type over ``runs`` calls after a warm-up call, from ONNX Runtime's profiler."""
    sess = session(path, threads, str(tmp / f"profile-{path.stem}"))
    sess.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})
    for _ in range(runs):
        sess.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})
    events = json.loads(Path(sess.end_profiling()).read_text())
    warm_up = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    per_op: Counter[str] = Counter()
    for event in events:
        node = event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
        if node and event["ts"] >= warm_up["ts"] + warm_up["dur"]:
            per_op[event["args"]["op_name"]] += event["dur"]
    return per_op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/sysu.yaml"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", nargs="+", choices=["fp32", "int8"], default=["fp32", "int8"])
    parser.add_argument("--top", type=int, default=12, help="op types listed per graph")
    args = parser.parse_args()

    net, _, _ = untrained_network(args.config)
    cfg = net.cfg
    h, w = cfg.input_height, cfg.input_width
    ours = EncoderGraph(net, Modality.INFRARED).eval()
    torch.manual_seed(0)
    plain = PlainResNet(cfg).eval()
    calibration = synthetic_crops(h, w, CALIBRATION_CROPS, CALIBRATION_CROPS)[Modality.INFRARED].calibration
    images = np.random.default_rng(0).random((args.batch, 3, h, w), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="vireid-profile-") as tmp_name:
        tmp = Path(tmp_name)
        graphs: list[Graph] = []
        for name, module in ((f"plain {cfg.arch}", plain), ("ours", ours)):
            fp32 = tmp / f"{name.split()[0]}-fp32.onnx"
            export_graph(module, fp32, h, w)
            macs = macs_per_image(module, h, w)
            for precision in args.precision:
                path = fp32 if precision == "fp32" else tmp / f"{name.split()[0]}-int8.onnx"
                if precision == "int8":
                    onnx.save(quantize_qdq(fp32, calibration), str(path))
                graphs.append(Graph(f"{name} {precision}", path, macs))
        sessions = [session(g.path, args.threads) for g in graphs]
        seconds = time_interleaved(
            [lambda s=s: s.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images}) for s in sessions], args.repeats
        )
        profiles = [op_profile(g.path, images, args.threads, 2, tmp) for g in graphs]

    print(
        f"config={args.config} arch={cfg.arch} last_stride={cfg.last_stride} input={h}x{w} batch={args.batch} "
        f"threads={args.threads} ort={ort.__version__} torch={torch.__version__}"
    )
    base = seconds[0]
    print(f"{'graph':<22}{'GMAC/img':>9}{'img/s':>8}{'time/ref':>9}{'MAC/ref':>8}{'conv %':>7}")
    for g, t, prof in zip(graphs, seconds, profiles, strict=True):
        conv = sum(v for k, v in prof.items() if k in CONVOLUTIONS) / sum(prof.values())
        print(
            f"{g.name:<22}{g.macs / 1e9:>9.2f}{args.batch / t:>8.2f}{t / base:>8.2f}x"
            f"{g.macs / graphs[0].macs:>7.2f}x{conv * 100:>7.1f}"
        )
    for g, prof in zip(graphs, profiles, strict=True):
        total = sum(prof.values())
        listed = ", ".join(f"{op} {d / total * 100:.1f}%" for op, d in prof.most_common(args.top))
        print(f"\n{g.name}: {listed}")


if __name__ == "__main__":
    main()

"""End-to-end ``/embed`` throughput of the service vs raw ONNX Runtime on the same images, as ratios from one run.

Usage: ``python bench/service.py [--model-dir DIR | --arch resnet18 --height 96 --width 48]
[--concurrency 1 8 32] [--requests 256] [--rounds 3]``

Without ``--model-dir`` a random-init VIReIDNet (default: the ``configs/tiny.yaml`` network, resnet18 at 96x48)
is exported with ``training.export.export_encoders``; speed does not depend on the weights. Two real uvicorn
servers (``service.app:create_app`` as a uvicorn factory, subprocesses on 127.0.0.1) serve the same model, one with
micro-batching and one without. Every request is one JPEG crop posted to ``/embed?modality=vis`` by ``c``
concurrent keep-alive connections (a minimal asyncio HTTP/1.1 client, so the load generator costs little CPU
on the shared cores). The baseline "raw" is ONNX Runtime in this process on the same JPEG bytes, with the
same host preprocessing (``decode_image`` + ``to_input``) and session options, ``c`` threads each running
batch 1; "raw batched" runs the same images in batches of ``c`` from one thread (ideal batching, no HTTP). For each
concurrency the modes run interleaved, ``--rounds`` times, and the median images/s is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from common.modality import Modality
from common.model_card import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ModelCard, encoder_filename
from common.preprocess import decode_image, to_input
from common.providers import CPU_PROVIDER

REPO = Path(__file__).resolve().parent.parent
BOUNDARY = "vireidbenchboundary"


def export_model(args: argparse.Namespace, out: Path) -> Path:
    """Export a random-init VIReIDNet of the requested size (torch is needed only here)."""
    import torch

    from model.config import NetConfig
    from model.net import VIReIDNet
    from training.export import export_encoders

    torch.manual_seed(0)
    cfg = NetConfig(arch=args.arch, num_stripes=args.stripes, input_height=args.height, input_width=args.width)
    export_encoders(VIReIDNet(cfg).eval(), out, model_version="bench", experiment="bench", git_sha="bench")
    return out


def make_images(count: int, height: int, width: int) -> list[bytes]:
    """Distinct JPEG crops of ``height`` x ``width`` (smooth noise, like a blurred person crop)."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    return images


def read_card(session: ort.InferenceSession) -> ModelCard:
    """The session's ModelCard."""
    return ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)


def preprocess(data: bytes, card: ModelCard) -> np.ndarray:
    """The host preprocessing the service does: decode, RGB, resize, [0, 1]."""
    return to_input(decode_image(data), card.input_height, card.input_width)


def raw_per_request(session: ort.InferenceSession, images: list[bytes], concurrency: int, n: int) -> float:
    """Images/s of ``concurrency`` threads, each decoding and embedding one image at a time."""
    card = read_card(session)
    counter = itertools.count()
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= n:
                return
            x = preprocess(images[i % len(images)], card)[None]
            session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: x})

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return n / (time.perf_counter() - start)


def raw_batched(session: ort.InferenceSession, images: list[bytes], batch: int, n: int) -> float:
    """Images/s of one thread decoding and embedding ``batch`` images at a time."""
    card = read_card(session)
    start = time.perf_counter()
    for first in range(0, n, batch):
        x = np.stack([preprocess(images[i % len(images)], card) for i in range(first, min(first + batch, n))])
        session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: x})
    return n / (time.perf_counter() - start)


def request_bytes(port: int, image: bytes) -> bytes:
    """A complete HTTP/1.1 keep-alive request posting ``image`` to /embed?modality=vis."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="crop.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /embed?modality=vis HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return body


async def _service_load(port: int, requests: list[bytes], concurrency: int, n: int) -> float:
    counter = itertools.count()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (i := next(counter)) < n:
                await _exchange(reader, writer, requests[i % len(requests)])
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def service_throughput(port: int, requests: list[bytes], concurrency: int, n: int) -> float:
    """Images/s of ``concurrency`` keep-alive connections posting one image per request."""
    return asyncio.run(_service_load(port, requests, concurrency, n))


def first_embedding(port: int, request: bytes) -> np.ndarray:
    """The service's embedding of one request (to check it against raw ORT)."""

    async def run() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await _exchange(reader, writer, request)
        finally:
            writer.close()

    return np.asarray(json.loads(asyncio.run(run()))["embeddings"][0], dtype=np.float32)


class Server:
    """``uvicorn --factory service.app:create_app`` in a subprocess on a socket bound here (no port race)."""

    def __init__(self, model_dir: Path, data_dir: Path, batching: bool, args: argparse.Namespace) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        env = {
            **os.environ,
            "VIREID_MODEL_DIR": str(model_dir),
            "VIREID_DATA_DIR": str(data_dir),
            "VIREID_PROVIDERS": json.dumps([CPU_PROVIDER]),
            "VIREID_BATCHING": "true" if batching else "false",
            "VIREID_MAX_BATCH": str(args.max_batch),
            "VIREID_MAX_WAIT_MS": str(args.max_wait_ms),
        }
        # Not `uvicorn --fd`: it rebuilds the socket as AF_UNIX, so asyncio skips TCP_NODELAY on accepted
        # connections and Nagle + delayed ACKs add ~40 ms to every sequential request.
        launcher = (
            "import socket, sys, uvicorn; sock = socket.socket(fileno=int(sys.argv[1])); "
            "uvicorn.Server(uvicorn.Config('service.app:create_app', factory=True, log_level='warning', "
            "access_log=False)).run(sockets=[sock])"
        )
        cmd = [sys.executable, "-c", launcher, str(self.sock.fileno())]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, pass_fds=[self.sock.fileno()])

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Block until /readyz answers 200 (requests wait in the listen backlog); fail if the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        return
            except (TimeoutError, OSError):
                continue
        raise RuntimeError(f"the service was not ready within {timeout} s")

    def stop(self) -> None:
        """Terminate the server."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.sock.close()


def measure(rounds: int, fns: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Median images/s of each function over ``rounds``, calling them interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model-dir``, or the network ``export_model`` builds without it."""
    parser.add_argument("--model-dir", type=Path, help="exported encoders; default: export a random-init net")
    parser.add_argument("--arch", default="resnet18", choices=["resnet50", "resnet34", "resnet18"])
    parser.add_argument("--stripes", type=int, default=2)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=48)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=256, help="images per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.model_dir or export_model(args, tmp / "models")
        # The service's session options (service/encoder.py OnnxEncoder), for a fair baseline; rebuilt here because
        # run as `python bench/service.py` this file shadows the `service` package.
        options = ort.SessionOptions()
        spinning = os.environ.get("VIREID_INTRA_OP_SPINNING", "false").lower() in ("1", "true", "yes")
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        path = model_dir / encoder_filename(Modality.VISIBLE)
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU_PROVIDER])
        card = read_card(session)
        images = make_images(64, card.input_height * 2, card.input_width * 2)
        servers = {True: Server(model_dir, tmp / "g1", True, args), False: Server(model_dir, tmp / "g2", False, args)}
        try:
            for server in servers.values():
                server.wait_ready()
            port = servers[True].port
            reqs = {b: [request_bytes(s.port, img) for img in images] for b, s in servers.items()}
            expected = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: preprocess(images[0], card)[None]})[0][0]
            got = first_embedding(port, reqs[True][0])
            max_diff = float(np.abs(got - expected).max())
            print(
                f"model: {card.experiment} {model_dir.name} dim {card.embedding_dim} input "
                f"{card.input_height}x{card.input_width}; max |service - raw ORT| = {max_diff:.1e}"
            )
            print(
                f"{os.cpu_count()} CPUs, ORT {ort.__version__}, {args.requests} images per measurement, "
                f"median of {args.rounds} interleaved rounds, max_batch {args.max_batch}, "
                f"max_wait_ms {args.max_wait_ms}, ORT spinning (raw and service) "
                f"{os.environ.get('VIREID_INTRA_OP_SPINNING', 'false')}, load average {os.getloadavg()[0]:.1f}"
            )
            header = (
                f"{'conc':>4} | {'raw img/s':>9} | {'raw batched':>11} | {'svc batched':>11} | "
                f"{'svc unbatched':>13} | {'batched/raw':>11} | {'unbatched/raw':>13} | {'batched/raw-b':>13}"
            )
            print(header)
            print("-" * len(header))
            for c in args.concurrency:
                for b in servers:  # warm-up: thread pools, first batches
                    service_throughput(servers[b].port, reqs[b], c, min(args.requests, 4 * c))
                r = measure(
                    args.rounds,
                    {
                        "raw": lambda c=c: raw_per_request(session, images, c, args.requests),
                        "raw_b": lambda c=c: raw_batched(session, images, c, args.requests),
                        "svc_b": lambda c=c: service_throughput(servers[True].port, reqs[True], c, args.requests),
                        "svc_u": lambda c=c: service_throughput(servers[False].port, reqs[False], c, args.requests),
                    },
                )
                print(
                    f"{c:>4} | {r['raw']:>9.1f} | {r['raw_b']:>11.1f} | {r['svc_b']:>11.1f} | {r['svc_u']:>13.1f} | "
                    f"{r['svc_b'] / r['raw']:>10.2f}x | {r['svc_u'] / r['raw']:>12.2f}x | "
                    f"{r['svc_b'] / r['raw_b']:>12.2f}x",
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()

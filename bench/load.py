"""Mixed workload (embed / search / add / delete) at increasing concurrency against a real service it starts.

Usage: ``python -m bench.load [--model-dir DIR | --arch resnet18 --height 96 --width 48]
[--concurrency 1 2 4 8 16 32] [--requests 240] [--seed-items 200]``

Without ``--model-dir`` a random-init VIReIDNet (default: the ``configs/tiny.yaml`` network) is exported, as in
``bench/service.py``, whose ``Server`` starts the service (``service.app:create_app`` under uvicorn, a subprocess
on 127.0.0.1, micro-batching on, default admission limits). The gallery is seeded with ``--seed-items``
infrared crops. At each concurrency ``c``, ``c`` keep-alive connections share ``--requests`` requests in a fixed
mix: 40% ``/embed`` (one visible crop), 30% ``/search`` (one visible crop against the infrared gallery, top 10),
20% ``POST /gallery`` (one infrared crop) and 10% ``DELETE /gallery/{id}`` (of a seeded item, never twice). It
prints requests/s, p50 and p99 latency, the error count (any status but 200/201/204, or a broken connection)
per level, and throughput and p99 as ratios to concurrency 1, so the knee (where throughput stops growing and
latency grows instead) is a figure measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench.service import Server, add_model_arguments, export_model, make_images
from bench.table import print_header

MIX = ("embed",) * 4 + ("search",) * 3 + ("add",) * 2 + ("delete",)
KNEE_GAIN = 1.10  # a level is past the knee when it adds less than 10% throughput to the best level before it


@dataclass(frozen=True)
class Level:
    """What one concurrency level measured."""

    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]  # what went wrong ("503 overloaded", "connection"), how often

    @property
    def error_count(self) -> int:
        """Requests that failed."""
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100), milliseconds."""
        return float(np.percentile(self.latencies, q)) * 1000.0


def upload(image: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart ``files`` for one crop."""
    return [("files", ("crop.jpg", image, "image/jpeg"))]


async def one_request(client: httpx.AsyncClient, kind: str, image: bytes, victims: Iterator[int]) -> str | None:
    """Send one request of ``kind``; None when it succeeded, else its status and error code."""
    if kind == "embed":
        r = await client.post("/embed", params={"modality": "vis"}, files=upload(image))
    elif kind == "search":
        query = [("file", ("crop.jpg", image, "image/jpeg"))]
        r = await client.post("/search", params={"modality": "vis", "top_k": 10}, files=query)
    elif kind == "add":
        r = await client.post("/gallery", params={"modality": "ir"}, files=upload(image))
    else:
        r = await client.delete(f"/gallery/{next(victims)}")
    if r.status_code in (200, 201, 204):
        return None
    is_json = r.headers.get("content-type") == "application/json"
    return f"{r.status_code} {r.json().get('error', '') if is_json else r.text[:40]}"


async def run_level(url: str, concurrency: int, n: int, images: list[bytes], victims: Iterator[int]) -> Level:
    """``n`` requests of the mix over ``concurrency`` connections."""
    counter = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            while (i := next(counter)) < n:
                kind, start = MIX[i % len(MIX)], time.perf_counter()
                try:
                    error = await one_request(client, kind, images[i % len(images)], victims)
                except httpx.TransportError as exc:
                    error = f"connection ({type(exc).__name__})"
                latencies.append(time.perf_counter() - start)
                if error is not None:
                    errors[f"{error} ({kind})"] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return Level(concurrency, n, seconds, latencies, errors)


def seed_gallery(url: str, images: list[bytes], count: int) -> list[int]:
    """Add ``count`` infrared crops (64 per request); returns their ids."""
    ids: list[int] = []
    with httpx.Client(base_url=url, timeout=300) as client:
        for first in range(0, count, 64):
            batch = [
                ("files", (f"{i}.jpg", images[i % len(images)], "image/jpeg"))
                for i in range(first, min(first + 64, count))
            ]
            r = client.post("/gallery", params={"modality": "ir"}, files=batch)
            r.raise_for_status()
            ids.extend(r.json()["ids"])
    return ids


def knee(levels: list[Level]) -> Level:
    """The first level after which no level adds ``KNEE_GAIN`` throughput."""
    best = levels[0]
    for level in levels[1:]:
        if level.throughput >= KNEE_GAIN * best.throughput:
            best = level
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--requests", type=int, default=240, help="requests per concurrency level")
    parser.add_argument("--seed-items", type=int, default=200, help="gallery items added before the first level")
    args = parser.parse_args()
    args.max_batch, args.max_wait_ms = 32, 0.0  # the service defaults, for bench.service.Server
    deletes = sum(args.requests // len(MIX) + 1 for _ in args.concurrency)
    if args.seed_items < deletes:
        parser.error(f"--seed-items must be at least {deletes}: the deletes of all levels remove seeded items")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.model_dir or export_model(args, tmp / "models")
        os.environ["VIREID_AUDIT_LOG"] = str(tmp / "audit.log")  # one JSON line per write: not on the terminal
        server = Server(model_dir, tmp / "gallery", True, args)
        try:
            server.wait_ready()
            url = f"http://127.0.0.1:{server.port}"
            card = httpx.get(f"{url}/readyz", timeout=30).json()
            images = make_images(64, args.height * 2, args.width * 2)
            victims = iter(seed_gallery(url, images, args.seed_items))
            asyncio.run(run_level(url, 2, 20, images, iter(range(10**9, 10**10))))  # warm-up (deletes of nothing)
            print(
                f"model {card['model_version']} dim {card['embedding_dim']} on {card['providers']['vis']}; "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.requests} requests per level, "
                f"mix embed/search/add/delete 4:3:2:1, gallery seeded with {args.seed_items} items"
            )
            print_header(
                ("conc", 4),
                ("req/s", 7),
                ("p50 ms", 7),
                ("p99 ms", 8),
                ("errors", 6),
                ("req/s vs c=1", 12),
                ("p99 vs c=1", 10),
            )
            levels: list[Level] = []
            for c in args.concurrency:
                level = asyncio.run(run_level(url, c, args.requests, images, victims))
                levels.append(level)
                base = levels[0]
                print(
                    f"{c:>4} | {level.throughput:>7.1f} | {level.percentile(50):>7.1f} | "
                    f"{level.percentile(99):>8.1f} | {level.error_count:>6} | "
                    f"{level.throughput / base.throughput:>11.2f}x | "
                    f"{level.percentile(99) / base.percentile(99):>9.2f}x",
                    flush=True,
                )
            for level in levels:
                for error, count in sorted(level.errors.items()):
                    print(f"errors at concurrency {level.concurrency}: {count} x {error}")
            top = knee(levels)
            print(
                f"knee: concurrency {top.concurrency} ({top.throughput:.1f} req/s, median "
                f"{statistics.median(top.latencies) * 1000:.1f} ms); "
                f"no higher level adds {KNEE_GAIN - 1:.0%} throughput"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()

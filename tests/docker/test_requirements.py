"""docker/requirements.py: the requirement list the image builders install, read from pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest

from tests.docker.dockerfile import DOCKER_DIR, REPO

PYPROJECT = {
    "project": {
        "name": "vireid",
        "dependencies": ["numpy>=1.26", "pillow"],
        "optional-dependencies": {
            "serve": ["fastapi>=0.115", "onnxruntime-gpu>=1.20; platform_system == 'Linux'", "numpy>=1.26"],
            "train": ["torch==2.14.1"],
            "all": ["vireid[serve,train]", "ruff"],
        },
    }
}


@pytest.fixture(scope="module")
def module() -> ModuleType:
    """docker/requirements.py imported from its path (docker/ is not a package)."""
    spec = importlib.util.spec_from_file_location("docker_requirements", DOCKER_DIR / "requirements.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_base_then_extra_without_duplicates(module: ModuleType) -> None:
    assert module.requirements(PYPROJECT, ["serve"]) == [
        "numpy>=1.26",
        "pillow",
        "fastapi>=0.115",
        "onnxruntime-gpu>=1.20; platform_system == 'Linux'",
    ]


def test_cpu_swaps_the_gpu_runtime_keeping_specifier_and_marker(module: ModuleType) -> None:
    got = module.requirements(PYPROJECT, ["serve"], cpu=True)
    assert "onnxruntime>=1.20; platform_system == 'Linux'" in got
    assert not [r for r in got if r.startswith("onnxruntime-gpu")]


def test_self_referencing_extra_is_expanded(module: ModuleType) -> None:
    got = module.requirements(PYPROJECT, ["all"])
    assert got == [
        "numpy>=1.26",
        "pillow",
        "ruff",
        "fastapi>=0.115",
        "onnxruntime-gpu>=1.20; platform_system == 'Linux'",
        "torch==2.14.1",
    ]
    assert not [r for r in got if r.startswith("vireid")]


def test_unknown_extra_is_an_error_naming_the_declared_ones(module: ModuleType) -> None:
    with pytest.raises(module.UnknownExtraError, match="'serving'.*'all', 'serve', 'train'"):
        module.requirements(PYPROJECT, ["serving"])


def test_cli_on_the_real_pyproject() -> None:
    done = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "requirements.py"), "--extra", "serve", "--cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert any(line.startswith("fastapi") for line in lines)
    assert any(line.startswith("onnxruntime") and not line.startswith("onnxruntime-gpu") for line in lines)
    bad = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "requirements.py"), "--extra", "nope"], cwd=REPO, capture_output=True
    )
    assert bad.returncode != 0

"""Fixtures for the service tests: tiny ONNX encoders exported once per session, settings on a fresh gallery."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from torch import nn

from common.modality import Modality
from common.model_card import encoder_filename
from service.settings import Settings
from tests.service.support import TinyEncoder, card_for, export_tiny


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the loop uvicorn uses)."""
    return "asyncio"


@dataclass(frozen=True)
class TinyModels:
    """A model directory and the torch modules its ONNX files were exported from."""

    model_dir: Path
    nets: dict[Modality, nn.Module]

    def copy_to(self, directory: Path) -> Path:
        """Copy the ONNX files to ``directory`` (to edit their metadata) and return it."""
        directory.mkdir(parents=True, exist_ok=True)
        for m in Modality:
            shutil.copy(self.model_dir / encoder_filename(m), directory / encoder_filename(m))
        return directory


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Both encoders, exported once per session."""
    model_dir = tmp_path_factory.mktemp("models")
    nets: dict[Modality, nn.Module] = {Modality.VISIBLE: TinyEncoder(1), Modality.INFRARED: TinyEncoder(2)}
    for m, net in nets.items():
        export_tiny(net, card_for(m), model_dir / encoder_filename(m))
    return TinyModels(model_dir, nets)


@pytest.fixture
def settings(tiny_models: TinyModels, tmp_path: Path) -> Settings:
    """Settings on the tiny models with a fresh gallery directory, CPU only."""
    return Settings(
        model_dir=tiny_models.model_dir,
        data_dir=tmp_path / "gallery",
        providers=("CPUExecutionProvider",),
        intra_op_threads=1,
        max_wait_ms=1.0,
    )

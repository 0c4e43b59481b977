"""Service test fixtures: the shared tiny VIReIDNet encoders (tests/conftest.py), settings on a fresh gallery."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.modality import Modality
from common.model_card import ModelCard, encoder_filename
from service.settings import Settings
from tests.conftest import ExportedModels
from tests.service.support import read_card


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the loop uvicorn uses)."""
    return "asyncio"


@dataclass(frozen=True)
class TinyModels:
    """A model directory, the torch graphs its ONNX files were exported from, and their ModelCards."""

    model_dir: Path
    nets: dict[Modality, Any]  # [0, 1] images -> embeddings, as exported (training.export.EncoderGraph)
    cards: dict[Modality, ModelCard]

    @property
    def card(self) -> ModelCard:
        """The visible encoder's card (both agree on size, dim and version)."""
        return self.cards[Modality.VISIBLE]

    def copy_to(self, directory: Path) -> Path:
        """Copy the ONNX files to ``directory`` (to edit their metadata) and return it."""
        directory.mkdir(parents=True, exist_ok=True)
        for m in Modality:
            shutil.copy(self.model_dir / encoder_filename(m), directory / encoder_filename(m))
        return directory


@pytest.fixture(scope="session")
def tiny_models(tiny_exported: ExportedModels) -> TinyModels:
    """The random-init tiny VIReIDNet (resnet18, 64x32) exported by training.export, shared with other packages."""
    cards = {m: read_card(tiny_exported.model_dir / encoder_filename(m)) for m in Modality}
    return TinyModels(tiny_exported.model_dir, tiny_exported.graphs, cards)


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

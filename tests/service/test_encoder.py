"""OnnxEncoder and load_encoders on real exported files: parity with torch, card, providers, refusals."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from common.modality import Modality
from common.model_card import encoder_filename
from common.providers import CUDA_PROVIDER
from service.encoder import (
    EncoderLoadError,
    EncoderMismatchError,
    OnnxEncoder,
    load_encoders,
    resolve_providers,
)
from tests.service.conftest import TinyModels
from tests.service.support import set_card

CPU = ("CPUExecutionProvider",)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("modality", list(Modality))
def test_embed_matches_torch(tiny_models: TinyModels, modality: Modality, batch: int) -> None:
    encoder = OnnxEncoder(tiny_models.model_dir / encoder_filename(modality), CPU)
    card = tiny_models.cards[modality]
    x = torch.rand(batch, 3, card.input_height, card.input_width, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = tiny_models.nets[modality](x).numpy()
    got = encoder.embed(x.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_card_comes_from_metadata(tiny_models: TinyModels) -> None:
    encoders = load_encoders(tiny_models.model_dir, CPU)
    assert {m: e.card for m, e in encoders.items()} == tiny_models.cards
    assert {m: c.modality for m, c in tiny_models.cards.items()} == {m: m for m in Modality}


def test_providers_in_use_are_reported_and_cpu_fallback_warned(
    tiny_models: TinyModels, caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_models.model_dir / encoder_filename(Modality.INFRARED)
    with caplog.at_level(logging.WARNING, logger="service.encoder"):
        encoder = OnnxEncoder(path, (CUDA_PROVIDER, "CPUExecutionProvider"))
    assert encoder.providers == encoder.session.get_providers()
    warned = [r for r in caplog.records if "CUDA was requested" in r.getMessage()]
    if CUDA_PROVIDER in encoder.providers:  # a GPU host: no fallback, nothing to warn about
        assert warned == []
    else:
        assert encoder.providers == ["CPUExecutionProvider"]
        assert len(warned) == 1 and str(path) in warned[0].getMessage()


def test_resolve_providers_keeps_requested_order_and_refuses_none() -> None:
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["CPUExecutionProvider", "CUDAExecutionProvider"], available) == [
        "CPUExecutionProvider",
        "CUDAExecutionProvider",
    ]
    assert resolve_providers(["TensorrtExecutionProvider", "CPUExecutionProvider"], available) == [
        "CPUExecutionProvider"
    ]
    with pytest.raises(EncoderLoadError, match="VIREID_PROVIDERS"):
        resolve_providers(["OpenVINOExecutionProvider"], available)


def test_refuses_encoders_of_different_model_versions(tiny_models: TinyModels, tmp_path: Path) -> None:
    model_dir = tiny_models.copy_to(tmp_path / "models")
    set_card(
        model_dir / encoder_filename(Modality.INFRARED),
        replace(tiny_models.cards[Modality.INFRARED], model_version="ffffffffffff"),
    )
    with pytest.raises(EncoderMismatchError, match="ffffffffffff"):
        load_encoders(model_dir, CPU)


def test_refuses_encoders_of_different_dims(tiny_models: TinyModels, tmp_path: Path) -> None:
    model_dir = tiny_models.copy_to(tmp_path / "models")
    set_card(model_dir / encoder_filename(Modality.VISIBLE), replace(tiny_models.card, embedding_dim=7))
    with pytest.raises(EncoderMismatchError, match="dim 7"):
        load_encoders(model_dir, CPU)


def test_refuses_a_file_carrying_the_other_modality(tiny_models: TinyModels, tmp_path: Path) -> None:
    model_dir = tiny_models.copy_to(tmp_path / "models")
    set_card(model_dir / encoder_filename(Modality.VISIBLE), tiny_models.cards[Modality.INFRARED])
    with pytest.raises(EncoderMismatchError, match="named for 'vis'"):
        load_encoders(model_dir, CPU)


def test_missing_file_and_missing_metadata_are_named(tiny_models: TinyModels, tmp_path: Path) -> None:
    with pytest.raises(EncoderLoadError, match="encoder_vis.onnx not found"):
        load_encoders(tmp_path, CPU)
    model_dir = tiny_models.copy_to(tmp_path / "models")
    import onnx

    path = model_dir / encoder_filename(Modality.INFRARED)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    with pytest.raises(EncoderLoadError, match="vireid.model_version"):
        load_encoders(model_dir, CPU)

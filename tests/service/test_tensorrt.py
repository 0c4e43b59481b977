"""TensorRT as an option: provider order, its options from the settings, and a clear fallback where it cannot run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from common.modality import Modality
from common.model_card import encoder_filename
from common.providers import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER
from service.encoder import EncoderLoadError, OnnxEncoder
from service.settings import Settings
from service.tensorrt import TensorrtOptions, check_provider_order
from tests.service.conftest import TinyModels
from tests.service.support import serve, with_settings

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "providers",
    [
        [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
        [TENSORRT_PROVIDER, CPU_PROVIDER],
        [CUDA_PROVIDER, CPU_PROVIDER],
        [CPU_PROVIDER],
        ["OpenVINOExecutionProvider", CPU_PROVIDER],  # others keep their place
    ],
)
def test_providers_in_order_are_accepted(providers: list[str]) -> None:
    check_provider_order(providers)
    assert Settings(providers=tuple(providers)).providers == tuple(providers)


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ([CUDA_PROVIDER, TENSORRT_PROVIDER, CPU_PROVIDER], "in the order"),
        ([CPU_PROVIDER, CUDA_PROVIDER], "in the order"),
        ([CPU_PROVIDER, TENSORRT_PROVIDER], "in the order"),
        ([CUDA_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER], "twice"),
    ],
)
def test_providers_out_of_order_are_a_startup_error(
    providers: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIREID_PROVIDERS", "[" + ", ".join(f'"{p}"' for p in providers) + "]")
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_provider_options_come_from_the_settings(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIREID_TRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIREID_TRT_FP16", "true")
    monkeypatch.setenv("VIREID_TRT_MAX_WORKSPACE_BYTES", str(3 << 30))
    s = Settings()
    options = TensorrtOptions(s.trt_cache_dir, s.trt_fp16, s.trt_int8, s.trt_max_workspace_bytes)
    model = tiny_models.copy_to(tmp_path / "models") / encoder_filename(Modality.VISIBLE)
    built = options.provider_options(model)
    engines = Path(built["trt_engine_cache_path"])
    assert built == {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "cache" / "timing"),
        "trt_fp16_enable": "True",
        "trt_int8_enable": "False",
        "trt_max_workspace_size": str(3 << 30),
    }
    assert engines.parent == tmp_path / "cache" / "engines" and engines.name.endswith("-fp16")
    assert engines.is_dir() and (tmp_path / "cache" / "timing").is_dir()
    # Other flags or another model file (same name, other weights) never share an engine directory.
    assert TensorrtOptions(tmp_path / "cache", int8=True).engine_dir(model) != engines
    other = tmp_path / "other" / model.name
    other.parent.mkdir()
    shutil.copy(tiny_models.model_dir / encoder_filename(Modality.INFRARED), other)
    assert options.engine_dir(other).name != engines.name
    assert options.engine_dir(model) == engines  # stable for the same file


def test_unavailable_tensorrt_falls_back_with_a_clear_log(
    tiny_models: TinyModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_models.model_dir / encoder_filename(Modality.INFRARED)
    with caplog.at_level(logging.WARNING, logger="service.encoder"):
        encoder = OnnxEncoder(path, (TENSORRT_PROVIDER, CPU_PROVIDER), tensorrt=TensorrtOptions(tmp_path / "trt"))
    assert encoder.providers == encoder.session.get_providers()
    warned = [r.getMessage() for r in caplog.records if "TensorRT was requested" in r.getMessage()]
    if TENSORRT_PROVIDER in encoder.providers:  # a GPU host with TensorRT: nothing to warn about
        assert warned == []
    else:
        assert TENSORRT_PROVIDER not in encoder.providers and CPU_PROVIDER in encoder.providers
        assert len(warned) == 1 and str(path) in warned[0] and "tensorrt-cu13-libs" in warned[0]
    images = np.random.default_rng(0).random((2, 3, tiny_models.card.input_height, tiny_models.card.input_width))
    cpu = OnnxEncoder(path, (CPU_PROVIDER,))
    np.testing.assert_allclose(
        encoder.embed(images.astype(np.float32)), cpu.embed(images.astype(np.float32)), atol=1e-3
    )


async def test_the_service_passes_its_tensorrt_settings_and_reports_the_providers_in_use(
    settings: Settings, tmp_path: Path
) -> None:
    settings = with_settings(settings, providers=(TENSORRT_PROVIDER, CPU_PROVIDER), trt_cache_dir=tmp_path / "trt")
    async with serve(settings) as (_, client):
        ready = (await client.get("/readyz")).json()
    engines = sorted(p.name.rsplit("-", 2)[0] for p in (tmp_path / "trt" / "engines").iterdir())
    assert engines == ["encoder_ir", "encoder_vis"]  # each encoder was given its own engine directory
    for providers in ready["providers"].values():
        assert CPU_PROVIDER in providers and providers[0] in (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)


def test_an_unwritable_engine_cache_is_a_named_load_error(tiny_models: TinyModels, tmp_path: Path) -> None:
    if TENSORRT_PROVIDER not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no TensorRT provider: its options are never built")
    (tmp_path / "a-file").write_text("not a directory")
    path = tiny_models.model_dir / encoder_filename(Modality.VISIBLE)
    with pytest.raises(EncoderLoadError, match="VIREID_TRT_CACHE_DIR"):
        OnnxEncoder(path, (TENSORRT_PROVIDER, CPU_PROVIDER), tensorrt=TensorrtOptions(tmp_path / "a-file" / "trt"))

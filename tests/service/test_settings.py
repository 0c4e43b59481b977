"""Settings come from VIREID_* variables, with nested index config and JSON lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIREID_MODEL_DIR", "/models")
    monkeypatch.setenv("VIREID_PROVIDERS", '["CPUExecutionProvider"]')
    monkeypatch.setenv("VIREID_API_KEY", "s3cret")
    monkeypatch.setenv("VIREID_INDEX__KIND", "ivf")
    monkeypatch.setenv("VIREID_INDEX__NLIST", "64")
    monkeypatch.setenv("VIREID_BATCHING", "false")
    s = Settings()
    assert s.model_dir == Path("/models")
    assert s.providers == ("CPUExecutionProvider",)
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert (s.index.kind, s.index.nlist, s.batching) == ("ivf", 64, False)


def test_defaults_prefer_cuda_then_cpu_and_need_no_key() -> None:
    s = Settings()
    assert s.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert s.api_key is None


def test_unknown_or_invalid_values_are_errors() -> None:
    with pytest.raises(ValidationError):
        Settings(max_batch=0)
    with pytest.raises(ValidationError):
        Settings(model_dirr="/x")  # type: ignore[call-arg]

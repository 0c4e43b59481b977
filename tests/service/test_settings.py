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


def test_read_protection_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIREID_API_KEY", "w-s3cret")
    monkeypatch.setenv("VIREID_READ_API_KEY", "r-s3cret")
    monkeypatch.setenv("VIREID_AUTH_READS", "true")
    monkeypatch.setenv("VIREID_AUDIT_LOG", "/var/log/vireid/audit.jsonl")
    s = Settings()
    assert s.read_api_key is not None and s.read_api_key.get_secret_value() == "r-s3cret"
    assert s.auth_reads is True and s.audit_log == Path("/var/log/vireid/audit.jsonl")
    assert "r-s3cret" not in repr(s)


def test_reads_stay_open_and_the_audit_goes_to_the_log_by_default() -> None:
    s = Settings()
    assert (s.read_api_key, s.auth_reads, s.audit_log) == (None, False, None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_reads": True}, "VIREID_AUTH_READS=true needs VIREID_API_KEY or VIREID_READ_API_KEY"),
        ({"api_key": "same", "read_api_key": "same"}, "VIREID_READ_API_KEY must differ from VIREID_API_KEY"),
        ({"api_key": ""}, "VIREID_API_KEY is set but empty"),
        ({"read_api_key": "", "auth_reads": True}, "VIREID_READ_API_KEY is set but empty"),
    ],
)
def test_key_settings_that_protect_nothing_are_startup_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


def test_a_queue_limit_no_full_request_could_pass_is_a_startup_error() -> None:
    with pytest.raises(ValidationError, match="VIREID_MAX_QUEUE \\(8\\) must be at least VIREID_MAX_FILES_PER_REQUEST"):
        Settings(max_queue=8, max_files_per_request=9)
    assert Settings(max_queue=9, max_files_per_request=9).max_queue == 9
    assert (Settings().max_queue, Settings().encode_timeout_s, Settings().retry_after_s) == (256, 30.0, 1)


def test_request_pixel_limit_defaults_to_five_images_at_the_image_limit() -> None:
    assert Settings().max_request_pixels == 100_000_000 == 5 * Settings().max_image_pixels


def test_vector_precision_at_rest_is_a_nested_index_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().index.vector_dtype == "float32"
    monkeypatch.setenv("VIREID_INDEX__VECTOR_DTYPE", "float16")
    assert Settings().index.vector_dtype == "float16"
    monkeypatch.setenv("VIREID_INDEX__VECTOR_DTYPE", "float8")
    with pytest.raises(ValidationError, match="vector_dtype"):
        Settings()


def test_index_json_selects_the_milvus_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from index.config import IndexConfig
    from index.milvus.config import MilvusConfig

    monkeypatch.setenv("VIREID_INDEX", '{"kind": "milvus", "uri": "http://milvus:19530", "token": "root:Milvus"}')
    index = Settings().index
    assert isinstance(index, MilvusConfig) and index.uri == "http://milvus:19530" and index.index_type == "FLAT"
    assert index.token is not None and index.token.get_secret_value() == "root:Milvus"
    assert index.collection_name("ab.12-cd") == "vireid_ab_12_cd"
    monkeypatch.setenv("VIREID_INDEX", '{"kind": "exact"}')
    assert isinstance(Settings().index, IndexConfig)
    for bad in ('{"kind": "milvus"}', '{"kind": "milvus", "uri": "x.db", "index_type": "DISKANN"}', '{"kind": "pg"}'):
        monkeypatch.setenv("VIREID_INDEX", bad)
        with pytest.raises(ValidationError):
            Settings()

"""docker-compose.yml against the Compose Specification schema, plus what the deployment must provide.

``docker compose config`` needs the compose plugin, absent here; the schema is the copy of the official
compose-spec.json that check-jsonschema (dev extra) ships as its builtin ``vendor.compose-spec``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from common.providers import CPU_PROVIDER, CUDA_PROVIDER
from service.healthcheck import build_parser
from service.settings import Settings
from tests.docker.dockerfile import DOCKER_DIR, REPO, parse_dockerfile

SERVE_SERVICES = {"gpu": "vireid", "cpu": "vireid-cpu"}
DEFAULT_SERVICES = ["vireid"]  # what a plain `docker compose up` starts: the GPU service


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """A validator for the Compose Specification schema (draft 2020-12)."""
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    """Schema violations as ``path: message`` strings."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def service_with_profile(compose: dict[str, Any], profile: str) -> tuple[str, dict[str, Any]]:
    """The one service enabled by ``profile``."""
    found = [(name, svc) for name, svc in compose["services"].items() if profile in svc.get("profiles", [])]
    assert len(found) == 1, f"profile {profile!r} should enable exactly one service, got {[n for n, _ in found]}"
    return found[0]


def mount_target(volume: str) -> str:
    """Container path of a short-syntax volume ``source:target[:mode]`` (``${VAR:-default}`` sources allowed)."""
    return re.sub(r"\$\{[^}]*\}", "SOURCE", volume).split(":")[1]


def test_compose_file_matches_the_compose_specification(validator: Any, compose: dict[str, Any]) -> None:
    assert errors(validator, compose) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "vireid", "deploy", "resources", "reservations", "devices", 0, "capabilities"), "gpu"),
        (("services", "vireid", "healthcheck", "interval"), 30),
        (("services", "vireid", "ports"), "8000:8000"),
        (("services", "vireid", "gpus_typo"), "all"),
    ],
)
def test_schema_rejects_a_broken_file(validator: Any, compose: dict[str, Any], path: tuple, value: Any) -> None:
    """The validation above is live: each single breakage is reported."""
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors(validator, broken)


def test_plain_up_starts_the_gpu_service_and_profiles_select_the_others(compose: dict[str, Any]) -> None:
    assert [name for name, svc in compose["services"].items() if not svc.get("profiles")] == DEFAULT_SERVICES
    assert service_with_profile(compose, "cpu")[0] == SERVE_SERVICES["cpu"]
    assert service_with_profile(compose, "train")[0] == "train"


def test_gpu_service_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["vireid"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert devices[0].get("count", "all") == "all" or int(devices[0]["count"]) >= 1


def test_cpu_service_reserves_no_gpu_and_uses_the_cpu_provider(compose: dict[str, Any]) -> None:
    cpu = compose["services"]["vireid-cpu"]
    assert "deploy" not in cpu or "devices" not in json.dumps(cpu["deploy"])
    assert json.loads(cpu["environment"]["VIREID_PROVIDERS"]) == [CPU_PROVIDER]
    assert json.loads(compose["services"]["vireid"]["environment"]["VIREID_PROVIDERS"])[0] == CUDA_PROVIDER


@pytest.mark.parametrize("variant", sorted(SERVE_SERVICES))
def test_serving_builds_the_matching_dockerfile_target(compose: dict[str, Any], variant: str) -> None:
    build = compose["services"][SERVE_SERVICES[variant]]["build"]
    assert (REPO / build["context"]).resolve() == REPO
    dockerfile = parse_dockerfile(REPO / build["dockerfile"])
    assert dockerfile.path == DOCKER_DIR / "Dockerfile.serve"
    assert build["target"] == variant and dockerfile.stage(variant)


@pytest.mark.parametrize("name", sorted(SERVE_SERVICES.values()))
def test_healthcheck_runs_the_server_probe_against_healthz(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] == "CMD"
    argv = check["test"][1:]
    assert argv[:3] == ["python", "-m", "service.healthcheck"]
    args = build_parser().parse_args(argv[3:])
    assert re.fullmatch(r"http://(127\.0\.0\.1|localhost):8000/healthz", args.url)


@pytest.mark.parametrize("name", sorted(SERVE_SERVICES.values()))
def test_gallery_is_a_named_volume_and_models_are_read_only(compose: dict[str, Any], name: str) -> None:
    mounts = {mount_target(m): m for m in compose["services"][name]["volumes"]}
    source = mounts["/data"].split(":")[0]
    assert source in compose["volumes"], f"/data must be the declared named volume, not {source!r}"
    assert mounts["/models"] == "./models:/models:ro"
    assert any(port.endswith(":8000") for port in compose["services"][name]["ports"])


@pytest.mark.parametrize("name", sorted(SERVE_SERVICES.values()))
def test_environment_names_only_real_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every VIREID_* variable is a field of service.settings.Settings, and the fixed ones parse as intended."""
    env = compose["services"][name]["environment"]
    fields = {f"VIREID_{field.upper()}" for field in Settings.model_fields}
    assert env and set(env) <= fields, sorted(set(env) - fields)
    assert "VIREID_API_KEY" in env and env["VIREID_API_KEY"] is None, "the key is passed through, never written here"
    assert "VIREID_READ_API_KEY" in env and env["VIREID_READ_API_KEY"] is None, "so is the read key"
    for key in [k for k in os.environ if k.startswith("VIREID_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, str(value))
    with pytest.raises(ValidationError, match="VIREID_AUTH_READS=true needs VIREID_API_KEY"):
        Settings()  # the protected setup does not start open when the deployer forgot the key
    monkeypatch.setenv("VIREID_API_KEY", "from-the-shell")
    settings = Settings()
    assert settings.model_dir == Path("/models") and settings.data_dir == Path("/data")
    assert settings.auth_reads is True, "the compose file shows the protected setup: reads need a key"


def test_train_service_uses_the_training_image_with_gpus(compose: dict[str, Any]) -> None:
    train = compose["services"]["train"]
    assert train["build"]["dockerfile"] == "docker/Dockerfile.train"
    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    targets = {mount_target(m) for m in train["volumes"]}
    assert {"/runs", "/models", "/datasets"} <= targets


def test_gpu_service_keeps_tensorrt_engines_in_a_named_volume(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["vireid"]
    cache = gpu["environment"]["VIREID_TRT_CACHE_DIR"]
    assert cache == parse_dockerfile(DOCKER_DIR / "Dockerfile.serve").stage("gpu").env()["VIREID_TRT_CACHE_DIR"]
    mounts = {mount_target(m): m.split(":")[0] for m in gpu["volumes"]}
    assert mounts.get(cache) in compose["volumes"], f"{cache} must be a declared named volume"
    assert {"/models", "/data"} <= mounts.keys()
    for flag in ("VIREID_TRT_FP16", "VIREID_TRT_INT8", "VIREID_TRT_MAX_WORKSPACE_BYTES"):
        assert flag in gpu["environment"] and gpu["environment"][flag] is None, "passed through from the shell"

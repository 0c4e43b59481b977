"""Fixtures for the Docker files: the parsed Dockerfiles and the compose file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.docker.dockerfile import COMPOSE_FILE, DOCKER_DIR, Dockerfile, parse_dockerfile


@pytest.fixture(scope="session")
def serve_dockerfile() -> Dockerfile:
    """docker/Dockerfile.serve, parsed."""
    return parse_dockerfile(DOCKER_DIR / "Dockerfile.serve")


@pytest.fixture(scope="session")
def train_dockerfile() -> Dockerfile:
    """docker/Dockerfile.train, parsed."""
    return parse_dockerfile(DOCKER_DIR / "Dockerfile.train")


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml as loaded by YAML (anchors and merge keys resolved, no variable interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())

"""The gallery backends the contract suite runs on: FAISS + SQLite, Milvus Lite and a real Milvus server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from index.base import Gallery
from index.config import IndexConfig
from index.factory import AnyIndexConfig, open_gallery
from index.milvus.config import MilvusConfig
from tests.index.conftest import DIM, MODEL


@dataclass
class Backend:
    """Opens galleries on one store (a FAISS directory, a Lite file, a server collection); closes them at the end."""

    name: str
    config: AnyIndexConfig
    data_dir: Path
    opened: list[Gallery]

    def open(self, dim: int = DIM, model_version: str = MODEL, **changes: object) -> Gallery:
        """Open (or reopen) the store's gallery for this model."""
        config = self.config.model_copy(update=changes) if changes else self.config
        gallery = open_gallery(config, self.data_dir, dim, model_version, "deadbeef")
        self.opened.append(gallery)
        return gallery

    def close_all(self) -> None:
        """Close every gallery opened here."""
        for gallery in self.opened:
            gallery.close()
        self.opened.clear()


def milvus_config(uri: str, **fields: object) -> MilvusConfig:
    """A Milvus config on a collection of its own (tests share one server)."""
    return MilvusConfig.model_validate(
        {"kind": "milvus", "uri": uri, "collection": f"t_{uuid.uuid4().hex[:16]}", **fields}
    )


def make_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    """The backend ``name`` on fresh storage under ``tmp_path``."""
    if name == "faiss":
        return Backend(name, IndexConfig(), tmp_path / "g", [])
    if name == "lite":
        return Backend(name, milvus_config(str(tmp_path / "lite.db")), tmp_path, [])
    return Backend(name, milvus_config(request.getfixturevalue("milvus_server").uri), tmp_path, [])

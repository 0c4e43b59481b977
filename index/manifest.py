"""manifest.json: what a gallery directory holds, checked against the loaded model before anything is read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.fsio import atomic_write_bytes
from index.errors import GalleryCorruptError, IndexMismatchError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """The self-description of a gallery directory."""

    embedding_dim: int
    model_version: str
    git_sha: str
    index: dict[str, Any]  # IndexConfig.model_dump(): index type and parameters
    format: int = FORMAT_VERSION
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def write(self, directory: Path) -> None:
        """Write ``directory/manifest.json`` atomically."""
        text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(directory / MANIFEST_NAME, text.encode())

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read ``directory/manifest.json``.

        Raises:
            GalleryCorruptError: the file is missing, not JSON, or lacks fields.
        """
        path = directory / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
            return cls(
                embedding_dim=int(raw["embedding_dim"]),
                model_version=str(raw["model_version"]),
                git_sha=str(raw["git_sha"]),
                index=dict(raw["index"]),
                format=int(raw["format"]),
                created_at=str(raw["created_at"]),
            )
        except FileNotFoundError as exc:
            raise GalleryCorruptError(f"{path} is missing; is {directory} a gallery directory?") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryCorruptError(f"{path} is not a valid gallery manifest: {exc!r}") from exc

    def check(self, directory: Path, embedding_dim: int, model_version: str) -> None:
        """Refuse a gallery written by another format, embedding dimension or model version.

        Raises:
            IndexMismatchError: naming the stored and the expected value and how to fix it.
        """
        fix = (
            "Open a new (empty) gallery directory for this model, or re-embed the gallery images with this "
            f"model into a new directory; keep {directory} for the model that built it."
        )
        if self.format != FORMAT_VERSION:
            raise IndexMismatchError(
                f"gallery {directory} has format {self.format}, this code reads format {FORMAT_VERSION}. {fix}"
            )
        if self.embedding_dim != embedding_dim:
            raise IndexMismatchError(
                f"gallery {directory} holds embeddings of dimension {self.embedding_dim}, the loaded model "
                f"produces dimension {embedding_dim}. {fix}"
            )
        if self.model_version != model_version:
            raise IndexMismatchError(
                f"gallery {directory} was built by model version {self.model_version!r}, the loaded model is "
                f"{model_version!r}; embeddings of different models are not comparable. {fix}"
            )

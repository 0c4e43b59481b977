"""File helpers every package shares: crash-safe replacement (temp file, fsync, ``os.replace``, fsync the
directory) and the sha256 of a file's bytes. Standard library only."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) contents to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Replace ``path`` by what ``write(temp_path)`` writes; a crash leaves either the old or the new file.

    The temp file lives in the same directory (same file system, so ``os.replace`` is atomic) and is removed if
    ``write`` or any later step fails.
    """
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files left by an interrupted save; returns what was removed."""
    stale = sorted(directory.glob("*" + TEMP_SUFFIX))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

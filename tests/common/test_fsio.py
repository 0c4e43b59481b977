from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from common.fsio import TEMP_SUFFIX, atomic_write, atomic_write_bytes, file_sha256, remove_stale_temps


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert not path.with_name(path.name + TEMP_SUFFIX).exists()


def test_remove_stale_temps(tmp_path: Path) -> None:
    (tmp_path / ("a" + TEMP_SUFFIX)).write_bytes(b"x")
    (tmp_path / "keep.bin").write_bytes(b"x")
    assert [p.name for p in remove_stale_temps(tmp_path)] == ["a" + TEMP_SUFFIX]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_file_sha256_reads_in_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # over 2 MiB: several blocks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()

"""One process per gallery: a second opener, in another process or the same one, is refused at once with a message
naming the holder; closing (or the holder's death) frees the directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common.modality import Modality
from index.base import NewItem
from index.errors import GalleryLockedError
from index.gallery import FaissGallery
from tests.index.conftest import DIM, MODEL, unit

REPO = Path(__file__).resolve().parents[2]

HOLDER = r"""
import sys
from index.gallery import FaissGallery

gallery = FaissGallery.open(sys.argv[1], int(sys.argv[2]), sys.argv[3])
print("opened", flush=True)
sys.stdin.read()  # hold the gallery until the test closes our stdin
gallery.close()
"""


def _child(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", *args],
        cwd=REPO,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_process_is_refused_naming_the_holder(tmp_path: Path):
    directory = tmp_path / "g"
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        gallery.add([NewItem(embedding=v, modality=Modality.VISIBLE) for v in unit(3)])
    holder = _child(HOLDER, str(directory), str(DIM), MODEL, stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "opened\n", holder.stderr
        in_flight = directory / "faiss_vis.index.tmp"  # as if the holder were writing a snapshot right now
        in_flight.write_bytes(b"half a snapshot")
        with pytest.raises(GalleryLockedError) as refused:
            FaissGallery.open(directory, DIM, MODEL)
        message = str(refused.value)
        assert f"process {holder.pid} on {socket.gethostname()}" in message
        assert str(directory) in message and "shared backend" in message and "since 20" in message
        assert in_flight.read_bytes() == b"half a snapshot"  # the refused opener touched nothing
        in_flight.unlink()
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0, holder.stderr
    with FaissGallery.open(directory, DIM, MODEL) as gallery:  # the holder closed: the directory is free
        assert gallery.counts()[Modality.VISIBLE] == 3


def test_opener_in_another_process_fails_while_this_one_holds(tmp_path: Path):
    directory = tmp_path / "g"
    with FaissGallery.open(directory, DIM, MODEL):
        second = _child(HOLDER, str(directory), str(DIM), MODEL, stdin=subprocess.DEVNULL)
        out, err = second.communicate(timeout=60)
        assert second.returncode != 0 and out == ""
        assert "GalleryLockedError" in err and f"process {os.getpid()} on {socket.gethostname()}" in err
    second = _child(HOLDER, str(directory), str(DIM), MODEL, stdin=subprocess.DEVNULL)
    assert second.communicate(timeout=60)[0] == "opened\n" and second.returncode == 0


def test_same_process_cannot_open_twice_and_a_killed_holder_frees_the_directory(tmp_path: Path):
    directory = tmp_path / "g"
    gallery = FaissGallery.open(directory, DIM, MODEL)
    with pytest.raises(GalleryLockedError, match=f"process {os.getpid()} "):
        FaissGallery.open(directory, DIM, MODEL)
    gallery.close()
    killed = _child(
        "import os, sys; from index.gallery import FaissGallery; "
        "FaissGallery.open(sys.argv[1], int(sys.argv[2]), sys.argv[3]); os._exit(9)",
        str(directory),
        str(DIM),
        MODEL,
    )
    assert killed.wait(timeout=60) == 9
    with FaissGallery.open(directory, DIM, MODEL) as gallery:
        assert gallery.counts() == {Modality.VISIBLE: 0, Modality.INFRARED: 0}

"""The exclusive lock on a gallery directory: one process serves a gallery at a time.

``fcntl.flock`` on ``gallery.lock`` inside the directory, taken without waiting and held for the gallery's lifetime;
the kernel drops it when the holder exits, even by a crash. The holder writes its pid, host and start time into the
file so that a refused opener can name it. flock is per open file, so a second open in the same process is refused
too. Network file systems may not honour flock; keep gallery directories on local disks.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from index.errors import GalleryLockedError

LOCK_NAME = "gallery.lock"


class DirectoryLock:
    """A held lock on one gallery directory; ``release()`` frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        """Use ``lock_directory``; this constructor only records the held file."""
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked, so no opener can hold the file being removed
        os.close(self._fd)
        self._fd = None


def lock_directory(directory: Path) -> DirectoryLock:
    """Lock ``directory`` (which must exist) for this process, at once or not at all.

    Raises:
        GalleryLockedError: another process, or another open in this one, holds it; the message names the holder.
    """
    path = directory / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise GalleryLockedError(
                f"gallery {directory} is in use by {holder}; a gallery directory is served by one process at a "
                "time. Stop that process or give this one another data dir; to run several replicas, put them on "
                "a shared backend (a vector database behind the Gallery protocol), not on one directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # the previous holder removed this file while we opened it: lock the current one
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return DirectoryLock(path, fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        return f"process {int(info['pid'])} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it is still starting: the lock file has no holder yet)"

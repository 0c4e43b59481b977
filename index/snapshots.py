"""A FAISS gallery's snapshot files (``faiss_<modality>.index``) and the changes they lag behind.

The files are checkpoints of the in-memory indexes, written by the gallery's background worker after
``checkpoint_every`` changes, on ``checkpoint()`` and on ``close()``, each atomically (temp file, fsync,
``os.replace``, fsync dir). A snapshot copies each index under the gallery's shared lock and writes the copy with
no lock held, so no search or write waits for a disk write, at most for that in-memory copy (a snapshot needs
memory for one modality's index twice over). Snapshots lag the committed state by the changes since the last one;
SQLite holds those, and opening the gallery replays them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from common.modality import Modality
from index import vector_index as vi
from index.layout import index_filename

logger = logging.getLogger(__name__)


class Snapshots:
    """Writes a gallery's snapshots and counts the changes since the last one (thread-safe)."""

    def __init__(self, directory: Path, copy_index: Callable[[Modality], vi.FaissIndex], checkpoint_every: int) -> None:
        """Snapshot into ``directory`` what ``copy_index`` returns: a private copy of a modality's current index."""
        self._directory = directory
        self._copy_index = copy_index
        self._checkpoint_every = checkpoint_every
        self._writing = threading.Lock()  # one snapshot at a time (they share the temp file names)
        self._state = threading.Lock()  # guards the two fields below
        self._changes = 0  # since the last snapshot
        self._wanted = False  # a snapshot is wanted whatever _changes says (a trained IVF index)

    def add_changes(self, n: int) -> None:
        """Count ``n`` changes the snapshot files do not hold yet."""
        with self._state:
            self._changes += n

    def want(self) -> None:
        """Count one change that is costly to redo (a trained IVF index) and ask for a snapshot however few changed."""
        with self._state:
            self._changes += 1
            self._wanted = True

    def due(self) -> bool:
        """Whether a snapshot is wanted, or ``checkpoint_every`` changes are not in the files yet."""
        with self._state:
            return self._wanted or self._changes >= self._checkpoint_every

    def outstanding(self) -> bool:
        """Whether the files lack anything: a snapshot file is missing, or a change or a wanted snapshot is pending."""
        missing = any(not (self._directory / index_filename(m)).exists() for m in Modality)
        with self._state:
            return missing or bool(self._changes) or self._wanted

    def write_if_due(self) -> None:
        """``write()`` if a snapshot is ``due()``."""
        if self.due():
            self.write()

    def write(self) -> None:
        """Write every modality's index atomically: a copy (``copy_index``) written with no gallery lock held."""
        with self._writing:
            with self._state:
                changes, wanted = self._changes, self._wanted
                self._wanted = False
            try:
                for modality in Modality:
                    copy = self._copy_index(modality)
                    vi.write(copy, self._directory / index_filename(modality))
                    del copy
            except BaseException:
                with self._state:
                    self._wanted = self._wanted or wanted
                raise
            with self._state:
                self._changes -= changes
        logger.info("checkpointed %s after %d changes", self._directory, changes)

"""FaissGallery: the ``Gallery`` protocol on one FAISS index per modality, SQLite metadata and a manifest.

Directory layout and the checks ``open`` makes there: ``index/layout.py``.

Consistency: SQLite is the source of truth. An add commits items *and vectors* to SQLite (one transaction,
WAL, ``synchronous=FULL``: durable on return) before the vectors enter the in-memory FAISS index; a delete removes
the vector from FAISS before its SQLite transaction commits. Ids come from a counter in the same transaction,
are int64, monotonic and never reused, so an id names one immutable vector forever. The FAISS files are
snapshots (``index/snapshots.py``), written atomically by a background worker after ``checkpoint_every`` changes,
on ``checkpoint()`` and on ``close()``. Opening a directory loads each snapshot and reconciles it with SQLite by id
set difference (``index/index_sync.py``); a missing or unreadable snapshot is rebuilt from SQLite. A crash at any
point therefore reopens to exactly the committed SQLite state: an add or delete that did not return is either fully
there or fully absent. A changed index build config (exact <-> ivf, nlist, quantiser) rebuilds from SQLite and
writes the new snapshots before the manifest that names the config; on open each snapshot's own type and build
parameters are checked against the config too, so a crash between those writes never serves the old index.

Concurrency: writes are serialised by a mutex; searches share a readers-writer lock that writers take
exclusively only while mutating or swapping an in-memory FAISS index (never during SQLite fsyncs or snapshot
writes), so FAISS ids are always a subset of committed SQLite ids and every hit has its metadata. Snapshots and
IVF training run on the gallery's background worker (``index/background.py``), never in a request: a write
returns once committed and in memory, and hands due work to the worker, whose failures (a full disk) are logged
and retried, never reported to a write that succeeded. A snapshot copies each index under the shared lock and
writes the copy with no lock held, so no search or write waits for a disk write or a training run, at most for
that in-memory copy. ``close()`` lets running work finish first.

Approximate (``kind="ivf"``): a modality is exact until it holds ``train_threshold`` items; once it does, the
worker trains the IVF index on (a sample of) the stored vectors and fills it with no lock held, replays the
writes committed meanwhile under the write mutex, swaps it in and snapshots it. Searches use the exact index
until the swap.

One process per directory: ``open`` takes an exclusive lock (``index/dirlock.py``) held until ``close()``.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.modality import Modality
from index import faiss_search
from index import vector_index as vi
from index.background import BackgroundWorker
from index.base import GalleryItem, Match, NewItem, SearchFilter
from index.config import IndexConfig
from index.dirlock import DirectoryLock, lock_directory
from index.embeddings import stack_embeddings, validate_embeddings
from index.errors import GalleryError, ItemNotFoundError
from index.index_sync import IndexSync
from index.layout import index_filename, prepare_locked, refuse_foreign_folder
from index.locks import ReadWriteLock
from index.manifest import MANIFEST_NAME, Manifest
from index.metadata import SQLITE_NAME, MetadataStore
from index.snapshots import Snapshots
from index.vector_storage import at_rest

logger = logging.getLogger(__name__)


class FaissGallery:
    """A persistent gallery: one FAISS index per modality, metadata and vectors in SQLite, a manifest."""

    def __init__(
        self, directory: Path, manifest: Manifest, store: MetadataStore, config: IndexConfig, lock: DirectoryLock
    ) -> None:
        """Use ``FaissGallery.open``; this constructor only wires the parts."""
        self.directory = directory
        self._lock = lock
        self.config = config
        self._manifest = manifest
        self._store = store
        self._indexes: dict[Modality, vi.FaissIndex] = {}
        self._sync = IndexSync(store, config, manifest.embedding_dim)
        self._write_mutex = threading.Lock()
        self._rw = ReadWriteLock()
        self._snapshots = Snapshots(directory, self._copy_index, config.checkpoint_every)
        self._worker = BackgroundWorker(self._background_pass, f"gallery maintenance of {directory}")
        self._closed = False

    @classmethod
    def open(
        cls,
        directory: Path | str,
        embedding_dim: int,
        model_version: str,
        git_sha: str = "unknown",
        config: IndexConfig | None = None,
    ) -> FaissGallery:
        """Open the gallery in ``directory``, creating it if the directory is empty or absent.

        Raises:
            IndexMismatchError: the manifest names another embedding dimension, model version or format.
            GalleryCorruptError: the directory has files but no valid manifest, or its database is missing.
            GalleryLockedError: another process (or another open in this one) holds the directory.
        """
        directory = Path(directory)
        config = config or IndexConfig()
        refuse_foreign_folder(directory)  # before anything is written to or removed from it
        if (directory / MANIFEST_NAME).exists():  # read-only, so a mismatch is named even while another holds it
            Manifest.read(directory).check(directory, embedding_dim, model_version)
        directory.mkdir(parents=True, exist_ok=True)
        lock = lock_directory(directory)
        try:
            return cls._open_locked(directory, embedding_dim, model_version, git_sha, config, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(
        cls,
        directory: Path,
        embedding_dim: int,
        model_version: str,
        git_sha: str,
        config: IndexConfig,
        lock: DirectoryLock,
    ) -> FaissGallery:
        """``open`` once this process holds the directory: nobody else writes to it from here on."""
        manifest = prepare_locked(directory, embedding_dim, model_version, git_sha, config)
        store = MetadataStore(directory / SQLITE_NAME, embedding_dim, config.vector_dtype)
        gallery = cls(directory, manifest, store, config, lock)
        try:
            stored = IndexConfig.model_validate(manifest.index)
            # A new vector precision: convert the stored vectors, then rebuild FAISS from them (so it holds what
            # SQLite holds); the manifest naming the precision is written last, so a crash redoes both.
            new_dtype = stored.vector_dtype != config.vector_dtype
            if new_dtype:
                converted = store.convert_vectors()
                logger.warning("converted %d stored vectors to %s in %s", converted, config.vector_dtype, directory)
            gallery._load(rebuild=new_dtype or stored.build_params() != config.build_params())
        except BaseException:
            gallery._store.close()
            raise
        gallery._worker.start()
        return gallery

    def _load(self, rebuild: bool) -> None:
        if rebuild:
            logger.warning(
                "index config changed from %s to %s: rebuilding %s from metadata.sqlite",
                self._manifest.index,
                self.config.model_dump(),
                self.directory,
            )
        refit = False
        for modality in Modality:
            path = self.directory / index_filename(modality)
            index = None
            if path.exists() and not rebuild:
                try:
                    index = vi.read(path)
                except RuntimeError as exc:
                    logger.warning("%s is unreadable (%s); rebuilding it from metadata.sqlite", path, exc)
                if index is not None and not self._sync.fits(path, index):
                    index = None
                    refit = True  # rewrite that snapshot now
            self._indexes[modality] = index if index is not None else self._sync.build(modality)
            self._snapshots.add_changes(self._sync.reconcile(modality, self._indexes[modality]))
        for modality in Modality:
            self._maybe_upgrade(modality)
        if rebuild or refit:
            self._snapshots.write()
        self._snapshots.write_if_due()
        if rebuild:  # last: a crash before this leaves the old manifest, and the next open rebuilds again
            self._manifest = Manifest(**{**self._manifest.__dict__, "index": self.config.model_dump()})
            self._manifest.write(self.directory)

    def _upgrade_due(self, modality: Modality) -> bool:
        """Whether ``modality`` is still exact although it holds enough items for its IVF index."""
        index = self._indexes.get(modality)
        return index is not None and self._sync.upgrade_due(index)

    def _maybe_upgrade(self, modality: Modality) -> None:
        """Replace an exact index by a trained IVF index once the modality is large enough.

        Training and filling run on a private index with no lock held; the write mutex is held only to replay the
        writes committed meanwhile, and the read lock exclusively only for the swap.
        """
        if not self._upgrade_due(modality):
            return
        index = self._sync.build(modality)
        if not vi.is_ivf(index):
            return  # deletes took the modality below the threshold meanwhile
        self._sync.reconcile(modality, index)
        with self._write_mutex:
            if self._closed:
                return
            self._sync.reconcile(modality, index)
            with self._rw.write():
                self._indexes[modality] = index
        self._snapshots.want()  # training is costly: keep its result on disk

    def rebuild(self) -> None:
        """Retrain and refill every modality's index from the stored vectors (e.g. after the gallery grew far
        beyond the items an IVF index was trained on); searches continue on the old indexes meanwhile."""
        self._check_open()
        with self._write_mutex:
            for modality in Modality:
                index = self._sync.build(modality)
                self._sync.reconcile(modality, index)
                with self._rw.write():
                    self._indexes[modality] = index
            self._snapshots.write()

    @property
    def embedding_dim(self) -> int:
        """Dimension of stored embeddings."""
        return self._manifest.embedding_dim

    @property
    def model_version(self) -> str:
        """Version of the model whose embeddings the gallery holds."""
        return self._manifest.model_version

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.directory} is closed")

    def add(self, items: Sequence[NewItem]) -> builtins.list[int]:
        """Add all items or none; returns their new ids in order; durable on return."""
        self._check_open()
        if not items:
            return []
        embeddings = stack_embeddings(items, self.embedding_dim)
        embeddings = at_rest(embeddings, self.config.vector_dtype)  # FAISS holds what SQLite gives back on reopen
        modalities = np.array([Modality(it.modality).value for it in items])
        with self._write_mutex:
            self._check_open()
            ids = np.asarray(self._store.add(items, embeddings), dtype=np.int64)
            try:
                with self._rw.write():
                    for modality in Modality:
                        mask = modalities == modality.value
                        if mask.any():
                            vi.add(self._indexes[modality], ids[mask], embeddings[mask])
            except BaseException:
                with self._rw.write():
                    for modality in Modality:
                        vi.remove(self._indexes[modality], ids)
                self._store.delete(ids.tolist())
                raise
            self._snapshots.add_changes(len(ids))
            self._maintain()
        return [int(i) for i in ids]

    def get(self, item_id: int) -> GalleryItem:
        """One item; raises ``ItemNotFoundError``."""
        self._check_open()
        with self._rw.read():
            return self._store.get(item_id)

    def list(self, offset: int = 0, limit: int = 100, modality: Modality | None = None) -> builtins.list[GalleryItem]:
        """Items in id order, paged."""
        self._check_open()
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
        with self._rw.read():
            return self._store.list(offset, limit, modality)

    def counts(self) -> dict[Modality, int]:
        """Number of items per modality (every modality present as a key)."""
        self._check_open()
        with self._rw.read():
            return self._store.counts()

    def vectors(self, item_ids: Sequence[int]) -> np.ndarray:
        """Stored float32 embeddings ``(n, dim)`` of the given ids, in their order; raises ``ItemNotFoundError``."""
        self._check_open()
        wanted = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        with self._rw.read():
            found, vectors = self._store.vectors(wanted)
        if len(found) != len(wanted):
            missing = sorted(set(wanted.tolist()) - set(found.tolist()))
            raise ItemNotFoundError(f"no gallery item has id {missing[0]}")
        return vectors

    def thumbnail(self, item_id: int) -> bytes | None:
        """The item's JPEG thumbnail, ``None`` if it was added without one; raises ``ItemNotFoundError``."""
        self._check_open()
        with self._rw.read():
            return self._store.thumbnail(item_id)

    def delete(self, item_id: int) -> None:
        """Remove one item (vector and metadata); raises ``ItemNotFoundError``; durable on return."""
        self._check_open()
        with self._write_mutex:
            self._check_open()
            item = self._store.get(item_id)
            ids, vectors = self._store.vectors(np.array([item.id], dtype=np.int64))
            index = self._indexes[item.modality]
            with self._rw.write():
                vi.remove(index, ids)
            try:
                self._store.delete([item.id])
            except BaseException:
                with self._rw.write():
                    vi.add(index, ids, vectors)
                raise
            self._snapshots.add_changes(1)
            self._maintain()

    def search(
        self, queries: np.ndarray, top_k: int, where: SearchFilter | None = None
    ) -> builtins.list[builtins.list[Match]]:
        """Top-k matches for each query row of float32 ``(n, dim)``, best first.

        Filtered by modality, label, camera and then ``min_score``; how: ``index/faiss_search.py``.
        """
        self._check_open()
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        queries = validate_embeddings(queries, self.embedding_dim, "queries")
        if len(queries) == 0:
            return []
        where = where or SearchFilter()
        with self._rw.read():
            found = faiss_search.top_k_ids(self._indexes, self._store, self.config, queries, top_k, where)
            if found is None:
                return [[] for _ in range(len(queries))]
            scores, ids = found
            items = self._store.get_many(np.unique(ids[ids >= 0]).tolist())
        return faiss_search.to_matches(scores, ids, items, where.min_score)

    def _work_due(self) -> bool:
        """Whether a snapshot or an IVF training run is due."""
        return self._snapshots.due() or any(self._upgrade_due(m) for m in Modality)

    def _maintain(self) -> None:
        """After a committed write: hand due IVF training and snapshots to the background worker; returns at once.

        The write has succeeded (durable in SQLite, searchable in memory) whatever becomes of that work: a failure
        (a full disk, k-means out of memory) is logged by the worker and retried.
        """
        if self._work_due():
            self._worker.request()

    def _background_pass(self) -> None:
        """The worker's job: train IVF where due, then snapshot if due."""
        for modality in Modality:
            if self._worker.stopping:
                return
            self._maybe_upgrade(modality)
        self._snapshots.write_if_due()

    def wait_idle(self) -> None:
        """Block until the background work due now (IVF training, a snapshot) has run; it may have failed (logged)."""
        self._check_open()
        self._worker.wait_idle()

    def checkpoint(self) -> None:
        """Snapshot the FAISS indexes to disk now (bounds the replay on the next open)."""
        self._check_open()
        with self._write_mutex:  # not concurrently with close()
            self._check_open()
            self._snapshots.write()

    def _copy_index(self, modality: Modality) -> vi.FaissIndex:
        """A private copy of ``modality``'s current index, taken under the shared lock (for a snapshot)."""
        with self._rw.read():
            return vi.clone(self._indexes[modality])

    def close(self) -> None:
        """Let running background work finish, snapshot if anything changed, release the gallery and its directory;
        further calls fail. Idempotent. A failed final snapshot is logged: the next open replays from SQLite."""
        self._worker.stop()
        with self._write_mutex:
            if self._closed:
                return
            try:
                if self._snapshots.outstanding():
                    self._snapshots.write()
            except Exception:
                logger.exception(
                    "final snapshot of %s failed; the next open replays from metadata.sqlite", self.directory
                )
            finally:
                with self._rw.write():
                    self._store.close()
                    self._indexes.clear()
                    self._closed = True
                self._lock.release()

    def __enter__(self) -> FaissGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

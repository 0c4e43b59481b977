"""FaissGallery: the ``Gallery`` protocol on one FAISS index per modality, SQLite metadata and a manifest.

Directory layout: ``manifest.json`` (format, embedding_dim, model_version, git_sha, index config),
``metadata.sqlite`` (items, their vectors in ``config.vector_dtype``, the id counter) and ``faiss_vis.index`` /
``faiss_ir.index``.

Consistency: SQLite is the source of truth. An add commits items *and vectors* to SQLite (one transaction,
WAL, ``synchronous=FULL``: durable on return) before the vectors enter the in-memory FAISS index; a delete removes
the vector from FAISS before its SQLite transaction commits. Ids come from a counter in the same transaction,
are int64, monotonic and never reused, so an id names one immutable vector forever. The FAISS files are
snapshots (checkpoints), written by a background worker after ``checkpoint_every`` changes, on ``checkpoint()``
and on ``close()``, each atomically (temp file, fsync, ``os.replace``, fsync dir). Opening a directory loads each
snapshot and reconciles it with SQLite by id set difference: ids only in FAISS are removed, ids only in SQLite are added
from their stored vectors; a missing or unreadable snapshot is rebuilt from SQLite. A crash at any point
therefore reopens to exactly the committed SQLite state: an add or delete that did not return is either fully
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
that in-memory copy (a snapshot needs memory for one modality's index twice over). Snapshots lag the committed
state by the changes since the last one; SQLite holds those, and open replays them. ``close()`` lets running work
finish first.

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

from common.fsio import TEMP_SUFFIX, remove_stale_temps
from common.modality import Modality
from index import vector_index as vi
from index.background import BackgroundWorker
from index.base import GalleryItem, Match, NewItem, SearchFilter
from index.config import IndexConfig
from index.dirlock import LOCK_NAME, DirectoryLock, lock_directory
from index.errors import GalleryCorruptError, GalleryError, InvalidEmbeddingError, ItemNotFoundError
from index.locks import ReadWriteLock
from index.manifest import MANIFEST_NAME, Manifest
from index.metadata import SQLITE_NAME, MetadataStore
from index.vector_storage import at_rest

logger = logging.getLogger(__name__)

NORM_TOLERANCE = 1e-3
_CHUNK = 8192  # vectors read from SQLite at a time when (re)building an index
_TRAIN_PER_LIST = 64  # IVF training sample: at most this many vectors per list
# What creating a gallery leaves before its manifest exists: such a folder is still new, not someone else's.
_NEW_GALLERY_LEFTOVERS = frozenset({MANIFEST_NAME + TEMP_SUFFIX, LOCK_NAME})


def index_filename(modality: Modality) -> str:
    """File name of one modality's FAISS snapshot inside a gallery directory."""
    return f"faiss_{modality.value}.index"


def validate_embeddings(embeddings: np.ndarray, dim: int, what: str) -> np.ndarray:
    """Return float32 C-contiguous ``(n, dim)`` rows, each finite and of unit L2 norm.

    Raises:
        InvalidEmbeddingError: wrong shape, non-finite values, or a norm off 1 by more than ``NORM_TOLERANCE``.
    """
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidEmbeddingError(f"{what} must have shape (n, {dim}), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidEmbeddingError(f"{what} rows {np.flatnonzero(bad)[:10].tolist()} contain NaN or inf")
    norms = np.linalg.norm(arr, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        first = int(np.flatnonzero(off)[0])
        raise InvalidEmbeddingError(
            f"{what} rows {np.flatnonzero(off)[:10].tolist()} are not L2-normalised (row {first} has norm "
            f"{norms[first]:.6f}); pass the encoder's normalised embeddings"
        )
    return arr


def stack_embeddings(items: Sequence[NewItem], dim: int) -> np.ndarray:
    """The items' embeddings as validated float32 ``(n, dim)`` rows (see ``validate_embeddings``).

    Raises:
        InvalidEmbeddingError: an embedding is not ``(dim,)``, finite and L2-normalised.
    """
    rows = [np.asarray(item.embedding).reshape(1, -1) for item in items]
    if any(row.shape[1] != dim for row in rows):
        shapes = sorted({np.asarray(item.embedding).shape for item in items})
        raise InvalidEmbeddingError(f"embeddings must have shape ({dim},), got {shapes}")
    return validate_embeddings(np.concatenate(rows), dim, "embeddings")


def _refuse_foreign_folder(directory: Path) -> None:
    """Refuse a folder that is neither a gallery nor new (absent, empty, or holding only a new gallery's leftovers).

    Raises:
        GalleryCorruptError: ``directory`` has other files but no manifest; nothing in it was touched.
    """
    if (directory / MANIFEST_NAME).exists() or not directory.exists():
        return
    foreign = sorted(p.name for p in directory.iterdir() if p.name not in _NEW_GALLERY_LEFTOVERS)
    if foreign:
        raise GalleryCorruptError(
            f"{directory} is not empty but has no {MANIFEST_NAME} (it holds {foreign[:5]}), so it is not a gallery "
            "and was left untouched; point the data dir at a gallery, an empty folder or a new path"
        )


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
        self._write_mutex = threading.Lock()
        self._rw = ReadWriteLock()
        self._snapshot_lock = threading.Lock()  # one snapshot at a time (they share the temp file names)
        self._state = threading.Lock()  # guards the two fields below
        self._changes = 0  # since the last checkpoint
        self._snapshot_due = False  # a snapshot is wanted whatever _changes says (a trained IVF index)
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
        _refuse_foreign_folder(directory)  # before anything is written to or removed from it
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
        for stale in remove_stale_temps(directory):
            logger.warning("removed %s left by an interrupted save", stale)
        if (directory / MANIFEST_NAME).exists():
            manifest = Manifest.read(directory)
            manifest.check(directory, embedding_dim, model_version)
            if not (directory / SQLITE_NAME).exists() and any(
                (directory / index_filename(m)).exists() for m in Modality
            ):
                raise GalleryCorruptError(
                    f"{directory / SQLITE_NAME} is missing; the index files alone are not a gallery"
                )
        else:
            _refuse_foreign_folder(directory)
            manifest = Manifest(
                embedding_dim=embedding_dim, model_version=model_version, git_sha=git_sha, index=config.model_dump()
            )
            manifest.write(directory)
            logger.info("created gallery %s (dim %d, model %s)", directory, embedding_dim, model_version)
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
                if index is not None and not self._fits(path, index):
                    index = None
                    refit = True  # rewrite that snapshot now
            self._indexes[modality] = index if index is not None else self._build(modality)
            self._add_changes(self._reconcile(modality, self._indexes[modality]))
        for modality in Modality:
            self._maybe_upgrade(modality)
        if rebuild or refit:
            self._checkpoint()
        self._maybe_checkpoint()
        if rebuild:  # last: a crash before this leaves the old manifest, and the next open rebuilds again
            self._manifest = Manifest(**{**self._manifest.__dict__, "index": self.config.model_dump()})
            self._manifest.write(self.directory)

    def _fits(self, path: Path, index: vi.FaissIndex) -> bool:
        """Whether a snapshot read from ``path`` is the index the config builds (else it is rebuilt, with a warning).

        An exact snapshot fits an IVF config too: a modality stays exact until ``train_threshold`` items.
        """
        if index.d != self.embedding_dim:
            logger.warning("%s has dimension %d, expected %d; rebuilding", path, index.d, self.embedding_dim)
            return False
        have, want = vi.build_params(index), self.config.build_params()
        if have["kind"] == "exact" or have == {k: want.get(k) for k in have}:
            return True
        logger.warning("%s is a %s index, the config asks for %s; rebuilding it from metadata.sqlite", path, have, want)
        return False

    def _build(self, modality: Modality) -> vi.FaissIndex:
        """A new empty index for ``modality``: IVF trained on its stored vectors if there are enough, else exact."""
        ids = self._store.ids(modality)
        if self.config.kind != "ivf" or len(ids) < self.config.train_threshold:
            return vi.new_exact(self.embedding_dim)
        n_train = min(len(ids), max(self.config.nlist, _TRAIN_PER_LIST * self.config.nlist))
        sample = np.sort(np.random.default_rng(0).choice(ids, size=n_train, replace=False))
        _, train = self._store.vectors(sample)
        logger.info(
            "training IVF (nlist %d, %s) for %s on %d vectors",
            self.config.nlist,
            self.config.quantizer,
            modality.value,
            len(train),
        )
        return vi.new_ivf(self.config, self.embedding_dim, train)

    def _reconcile(self, modality: Modality, index: vi.FaissIndex) -> int:
        """Make ``index`` hold exactly the ids SQLite holds for ``modality``; returns how many changed."""
        have, want = vi.index_ids(index), self._store.ids(modality)
        extra, missing = np.setdiff1d(have, want), np.setdiff1d(want, have)
        if len(extra):
            vi.remove(index, extra)
        for start in range(0, len(missing), _CHUNK):
            found, vectors = self._store.vectors(missing[start : start + _CHUNK])
            vi.add(index, found, vectors)
        if len(extra) or len(missing):
            logger.info(
                "%s index: replayed %d adds and %d deletes from metadata.sqlite",
                modality.value,
                len(missing),
                len(extra),
            )
        return len(extra) + len(missing)

    def _upgrade_due(self, modality: Modality) -> bool:
        """Whether ``modality`` is still exact although it holds enough items for its IVF index."""
        index = self._indexes.get(modality)
        if self.config.kind != "ivf" or index is None or vi.is_ivf(index):
            return False
        return bool(index.ntotal >= self.config.train_threshold)

    def _maybe_upgrade(self, modality: Modality) -> None:
        """Replace an exact index by a trained IVF index once the modality is large enough.

        Training and filling run on a private index with no lock held; the write mutex is held only to replay the
        writes committed meanwhile, and the read lock exclusively only for the swap.
        """
        if not self._upgrade_due(modality):
            return
        index = self._build(modality)
        if not vi.is_ivf(index):
            return  # deletes took the modality below the threshold meanwhile
        self._reconcile(modality, index)
        with self._write_mutex:
            if self._closed:
                return
            self._reconcile(modality, index)
            with self._rw.write():
                self._indexes[modality] = index
        with self._state:
            self._changes += 1
            self._snapshot_due = True  # training is costly: keep its result on disk

    def rebuild(self) -> None:
        """Retrain and refill every modality's index from the stored vectors (e.g. after the gallery grew far
        beyond the items an IVF index was trained on); searches continue on the old indexes meanwhile."""
        self._check_open()
        with self._write_mutex:
            for modality in Modality:
                index = self._build(modality)
                self._reconcile(modality, index)
                with self._rw.write():
                    self._indexes[modality] = index
            self._checkpoint()

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
            self._add_changes(len(ids))
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
            self._add_changes(1)
            self._maintain()

    def search(
        self, queries: np.ndarray, top_k: int, where: SearchFilter | None = None
    ) -> builtins.list[builtins.list[Match]]:
        """Top-k matches for each query row of float32 ``(n, dim)``, best first.

        Exactly the ``top_k`` best matching items when enough match (exact index), filtered by modality (one
        index each), label and camera (a FAISS id selector, or exact scoring of the stored vectors when at most
        ``filter_exact_limit`` items match) and then ``min_score``. An IVF index's candidates are re-scored
        exactly from the stored vectors unless ``config.rerank`` is 1.
        """
        self._check_open()
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        queries = validate_embeddings(queries, self.embedding_dim, "queries")
        if len(queries) == 0:
            return []
        where = where or SearchFilter()
        modalities = [Modality(where.modality)] if where.modality is not None else list(Modality)
        filtered = where.label is not None or where.camera is not None
        with self._rw.read():
            results = []
            for modality in modalities:
                index = self._indexes[modality]
                among = self._store.ids(modality, where.label, where.camera) if filtered else None
                if among is not None and len(among) <= self.config.filter_exact_limit:
                    found, vectors = self._store.vectors(among)
                    results.append(vi.exact_top_k(queries, vectors, found, top_k))
                elif among is None or len(among):
                    results.append(self._search_index(index, queries, top_k, among))
            if not results:
                return [[] for _ in range(len(queries))]
            scores, ids = vi.merge_top_k(results, top_k)
            items = self._store.get_many(np.unique(ids[ids >= 0]).tolist())
        min_score = -np.inf if where.min_score is None else where.min_score
        return [
            [
                Match(item=items[int(i)], score=float(s))
                for s, i in zip(row_scores, row_ids, strict=True)
                if i >= 0 and s >= min_score and int(i) in items
            ]
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def _search_index(
        self, index: vi.FaissIndex, queries: np.ndarray, top_k: int, among: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of one modality's index; an IVF index's ``top_k * rerank`` candidates re-scored exactly."""
        if not vi.is_ivf(index) or self.config.rerank == 1:
            return vi.search(index, queries, top_k, self.config.nprobe, among)
        _, candidates = vi.search(index, queries, top_k * self.config.rerank, self.config.nprobe, among)
        found, vectors = self._store.vectors(np.unique(candidates[candidates >= 0]))
        return vi.rerank_exact(queries, candidates, found, vectors, top_k)

    def _add_changes(self, n: int) -> None:
        with self._state:
            self._changes += n

    def _work_due(self) -> bool:
        """Whether a snapshot or an IVF training run is due."""
        with self._state:
            due = self._snapshot_due or self._changes >= self.config.checkpoint_every
        return due or any(self._upgrade_due(m) for m in Modality)

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
        self._maybe_checkpoint()

    def wait_idle(self) -> None:
        """Block until the background work due now (IVF training, a snapshot) has run; it may have failed (logged)."""
        self._check_open()
        self._worker.wait_idle()

    def _maybe_checkpoint(self) -> None:
        with self._state:
            due = self._snapshot_due or self._changes >= self.config.checkpoint_every
        if due:
            self._checkpoint()

    def checkpoint(self) -> None:
        """Snapshot the FAISS indexes to disk now (bounds the replay on the next open)."""
        self._check_open()
        with self._write_mutex:  # not concurrently with close()
            self._check_open()
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Write every modality's index atomically: a copy taken under the shared read lock (a writer waits for a
        memory copy, a reader for nothing) is written to disk with no gallery lock held."""
        with self._snapshot_lock:
            with self._state:
                changes, due = self._changes, self._snapshot_due
                self._snapshot_due = False
            try:
                for modality in Modality:
                    with self._rw.read():
                        copy = vi.clone(self._indexes[modality])
                    vi.write(copy, self.directory / index_filename(modality))
                    del copy
            except BaseException:
                with self._state:
                    self._snapshot_due = self._snapshot_due or due
                raise
            with self._state:
                self._changes -= changes
        logger.info("checkpointed %s after %d changes", self.directory, changes)

    def close(self) -> None:
        """Let running background work finish, snapshot if anything changed, release the gallery and its directory;
        further calls fail. Idempotent. A failed final snapshot is logged: the next open replays from SQLite."""
        self._worker.stop()
        with self._write_mutex:
            if self._closed:
                return
            try:
                missing = any(not (self.directory / index_filename(m)).exists() for m in Modality)
                if missing or self._changes or self._snapshot_due:
                    self._checkpoint()
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

"""SQLite store of gallery items: metadata, the vectors (the source of truth; float32 or float16) and the id counter.

One writer connection (used under the gallery's write mutex) and a pool of reader connections; the database is
in WAL mode with ``synchronous=FULL``, so a commit is durable and readers never block the writer.
"""

from __future__ import annotations

import json
import queue
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from common.modality import Modality
from index.base import GalleryItem, NewItem
from index.errors import ItemNotFoundError
from index.vector_storage import VectorDtype, blob_bytes, decode, encode

SQLITE_NAME = "metadata.sqlite"
_IN_CHUNK = 900  # ids per "IN (...)" query, below SQLite's bound-parameter limit
CONVERT_CHUNK = 4096  # vectors converted per transaction when the stored precision changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,  -- the int64 FAISS id; allocated from counters.next_id, never reused
    modality TEXT NOT NULL CHECK (modality IN ('vis', 'ir')),
    label TEXT,
    camera TEXT,
    captured_at TEXT,
    source TEXT,
    sha256 TEXT,
    extra TEXT NOT NULL DEFAULT '{}',  -- JSON object
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_modality ON items (modality, id);
CREATE INDEX IF NOT EXISTS items_label ON items (label, modality);
CREATE INDEX IF NOT EXISTS items_camera ON items (camera, modality);
CREATE INDEX IF NOT EXISTS items_sha256 ON items (sha256);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY,  -- items.id
    embedding BLOB NOT NULL  -- float32 or float16 little-endian (told by length), embedding_dim values
);
CREATE TABLE IF NOT EXISTS thumbnails (
    id INTEGER PRIMARY KEY,  -- items.id
    jpeg BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('next_id', 1);
"""
_COLUMNS = "id, modality, label, camera, captured_at, source, sha256, extra, added_at"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _row_to_item(row: tuple[object, ...]) -> GalleryItem:
    item_id, modality, label, camera, captured_at, source, sha256, extra, added_at = row
    return GalleryItem(
        id=int(item_id),  # type: ignore[call-overload]
        modality=Modality(str(modality)),
        label=label,  # type: ignore[arg-type]
        camera=camera,  # type: ignore[arg-type]
        captured_at=captured_at,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
        sha256=sha256,  # type: ignore[arg-type]
        extra=json.loads(str(extra)),
        added_at=str(added_at),
    )


class MetadataStore:
    """Items, vectors and the id counter of one gallery in ``metadata.sqlite``."""

    def __init__(self, path: Path, embedding_dim: int, vector_dtype: VectorDtype = "float32") -> None:
        self.path = path
        self.embedding_dim = embedding_dim
        self.vector_dtype: VectorDtype = vector_dtype
        self._writer = _connect(path)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.executescript(_SCHEMA)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = _connect(self.path)
            self._all_readers.append(conn)
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def close(self) -> None:
        """Close every connection (callers must have stopped using the store)."""
        for conn in self._all_readers:
            conn.close()
        self._writer.close()

    def add(self, items: Sequence[NewItem], embeddings: np.ndarray) -> list[int]:
        """Insert items and their ``(n, dim)`` float32 embeddings in one transaction; returns the new ids."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = [
            (
                Modality(item.modality).value,
                item.label,
                item.camera,
                item.captured_at,
                item.source,
                item.sha256,
                json.dumps(item.extra, sort_keys=True),
            )
            for item in items
        ]
        blobs = encode(embeddings, self.vector_dtype)
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            (first,) = conn.execute("SELECT value FROM counters WHERE name = 'next_id'").fetchone()
            ids = list(range(int(first), int(first) + len(rows)))
            conn.execute("UPDATE counters SET value = ? WHERE name = 'next_id'", (int(first) + len(rows),))
            conn.executemany(
                f"INSERT INTO items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(i, *row, now) for i, row in zip(ids, rows, strict=True)],
            )
            conn.executemany("INSERT INTO vectors (id, embedding) VALUES (?, ?)", list(zip(ids, blobs, strict=True)))
            conn.executemany(
                "INSERT INTO thumbnails (id, jpeg) VALUES (?, ?)",
                [(i, item.thumbnail) for i, item in zip(ids, items, strict=True) if item.thumbnail is not None],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ids

    def delete(self, ids: Sequence[int]) -> None:
        """Delete items, their vectors and thumbnails in one transaction (missing ids are ignored)."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = [int(i) for i in ids[start : start + _IN_CHUNK]]
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM vectors WHERE id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM thumbnails WHERE id IN ({marks})", chunk)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get(self, item_id: int) -> GalleryItem:
        """One item; raises ``ItemNotFoundError``."""
        with self._reader() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (int(item_id),)).fetchone()
        if row is None:
            raise ItemNotFoundError(f"no gallery item has id {item_id}")
        return _row_to_item(row)

    def thumbnail(self, item_id: int) -> bytes | None:
        """The item's JPEG thumbnail or ``None``; raises ``ItemNotFoundError`` for an unknown id."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT t.jpeg FROM items i LEFT JOIN thumbnails t ON t.id = i.id WHERE i.id = ?", (int(item_id),)
            ).fetchone()
        if row is None:
            raise ItemNotFoundError(f"no gallery item has id {item_id}")
        return None if row[0] is None else bytes(row[0])

    def get_many(self, ids: Sequence[int]) -> dict[int, GalleryItem]:
        """Items by id; absent ids are left out."""
        found: dict[int, GalleryItem] = {}
        with self._reader() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = [int(i) for i in ids[start : start + _IN_CHUNK]]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT {_COLUMNS} FROM items WHERE id IN ({marks})", chunk):
                    item = _row_to_item(row)
                    found[item.id] = item
        return found

    def list(self, offset: int, limit: int, modality: Modality | None) -> list[GalleryItem]:
        """Items in id order, paged."""
        where, args = ("WHERE modality = ?", [Modality(modality).value]) if modality is not None else ("", [])
        sql = f"SELECT {_COLUMNS} FROM items {where} ORDER BY id LIMIT ? OFFSET ?"
        with self._reader() as conn:
            return [_row_to_item(row) for row in conn.execute(sql, [*args, int(limit), int(offset)])]

    def counts(self) -> dict[Modality, int]:
        """Number of items per modality, every modality present."""
        counts = dict.fromkeys(Modality, 0)
        with self._reader() as conn:
            for modality, count in conn.execute("SELECT modality, COUNT(*) FROM items GROUP BY modality"):
                counts[Modality(modality)] = int(count)
        return counts

    def ids(self, modality: Modality, label: str | None = None, camera: str | None = None) -> np.ndarray:
        """Sorted int64 ids of one modality, optionally restricted to a label and/or camera."""
        sql, args = "SELECT id FROM items WHERE modality = ?", [Modality(modality).value]
        if label is not None:
            sql, args = sql + " AND label = ?", [*args, label]
        if camera is not None:
            sql, args = sql + " AND camera = ?", [*args, camera]
        with self._reader() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found_ids, float32 (n, dim) embeddings)`` in the order of ``ids``; ids not stored are left out."""
        out = np.empty((len(ids), self.embedding_dim), dtype=np.float32)
        position = {int(i): k for k, i in enumerate(ids)}
        found = np.zeros(len(ids), dtype=bool)
        with self._reader() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = [int(i) for i in ids[start : start + _IN_CHUNK]]
                marks = ",".join("?" * len(chunk))
                for item_id, blob in conn.execute(f"SELECT id, embedding FROM vectors WHERE id IN ({marks})", chunk):
                    k = position[int(item_id)]
                    out[k] = decode(blob, self.embedding_dim)
                    found[k] = True
        ids = np.asarray(ids, dtype=np.int64)
        return (ids, out) if found.all() else (ids[found], out[found])

    def convert_vectors(self) -> int:
        """Re-encode every vector not stored in ``vector_dtype``, then compact the file; returns how many changed.

        Chunked transactions: each row is valid in either precision, so a crash leaves a readable table and the
        next call finishes the work.
        """
        target = blob_bytes(self.embedding_dim, self.vector_dtype)
        conn, converted, after = self._writer, 0, -1
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(
                    "SELECT id, embedding FROM vectors WHERE id > ? AND length(embedding) != ? ORDER BY id LIMIT ?",
                    (after, target, CONVERT_CHUNK),
                ).fetchall()
                vectors = np.stack([decode(blob, self.embedding_dim) for _, blob in rows]) if rows else None
                if vectors is not None:
                    blobs = encode(vectors, self.vector_dtype)
                    conn.executemany(
                        "UPDATE vectors SET embedding = ? WHERE id = ?",
                        [(blob, item_id) for blob, (item_id, _) in zip(blobs, rows, strict=True)],
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if not rows:
                break
            converted, after = converted + len(rows), int(rows[-1][0])
        if converted:
            conn.execute("VACUUM")  # atomic; gives the freed pages back to the file system
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return converted

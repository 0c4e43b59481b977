"""MilvusGallery: the ``Gallery`` protocol on one Milvus collection, so that service replicas hold no state.

Layout: one collection per model (default ``vireid_<model version>``) with explicit int64 ids, the float32
vector, ``modality``/``label``/``camera`` as scalar fields (filters are Milvus expressions on them), the rest of
the metadata in a JSON field and the thumbnail base64 in a VARCHAR. Its properties record the format, model version
and dimension; a replica with another model is refused, as the FAISS gallery refuses on its manifest. New ids are
auto ids of a companion collection ``<name>__ids`` (Milvus allocates them, unique across every replica) plus
``NEW_ID_BASE``; a migration keeps its source ids, which stay below that.

Consistency: every read (get, list, counts, vectors, thumbnail, search) uses ``config.consistency``, Strong by
default, so a write acknowledged by one replica is visible to the next read on any other. An add is one insert
(one message on the collection's channel: all rows or none); if it fails, the ids it may have written are deleted
before the error is raised. Milvus acknowledges an insert or delete once it is in its write-ahead log: durable.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from common.modality import Modality
from index.base import GalleryItem, Match, NewItem, SearchFilter
from index.embeddings import stack_embeddings, validate_embeddings
from index.errors import GalleryError, ItemNotFoundError
from index.milvus import expressions as ex
from index.milvus.config import MilvusConfig
from index.milvus.connection import MilvusConnection
from index.milvus.rows import ITEM_FIELDS, THUMBNAIL_FIELD, VECTOR_FIELD, now_iso, thumbnail_of, to_item, to_row
from index.milvus.schema import ID_SUFFIX, MAX_THUMBNAIL_BYTES, Identity, ensure_collections

logger = logging.getLogger(__name__)

# New ids are the companion collection's auto ids plus this: above every id a migration keeps (a FAISS gallery
# counts from 1), and below 2**53 for Milvus Lite's auto ids (which count from 1 as well).
NEW_ID_BASE = 2**50
MAX_TOP_K = 16_384  # Milvus's largest search limit
_PAGE = 16_384  # rows per query when iterating


class MilvusGallery:
    """A gallery in a Milvus collection (Milvus Lite file, standalone server or cluster)."""

    def __init__(self, config: MilvusConfig, identity: Identity) -> None:
        """Use ``MilvusGallery.open``."""
        self.config = config
        self.identity = identity
        self.collection = config.collection_name(identity.model_version)
        self._conn = MilvusConnection(config, self._on_connect)

    @classmethod
    def open(
        cls, config: MilvusConfig, embedding_dim: int, model_version: str, git_sha: str = "unknown"
    ) -> MilvusGallery:
        """Connect (or keep trying in the background while Milvus is unreachable) and create or check the collection.

        Raises:
            IndexMismatchError: the collection belongs to another model version or dimension.
        """
        gallery = cls(config, Identity(embedding_dim, model_version, git_sha))
        gallery._conn.start()
        return gallery

    def _on_connect(self, client: MilvusClient) -> None:
        ensure_collections(client, self.collection, self.config, self.identity, self.config.timeout_s)

    @property
    def unavailable_reason(self) -> str | None:
        """Why the gallery cannot be used now (Milvus unreachable, another model), ``None`` when it can."""
        return self._conn.reason

    @property
    def embedding_dim(self) -> int:
        """Dimension of stored embeddings."""
        return self.identity.embedding_dim

    @property
    def model_version(self) -> str:
        """Version of the model whose embeddings the gallery holds."""
        return self.identity.model_version

    def _read_kwargs(self) -> dict[str, Any]:
        return {"consistency_level": self.config.consistency}

    def _embeddings(self, items: Sequence[NewItem]) -> np.ndarray:
        for item in items:
            if item.thumbnail is not None and len(item.thumbnail) > MAX_THUMBNAIL_BYTES:
                raise ValueError(f"a thumbnail of {len(item.thumbnail)} bytes exceeds {MAX_THUMBNAIL_BYTES} bytes")
        return stack_embeddings(items, self.embedding_dim)

    def allocate_ids(self, n: int) -> builtins.list[int]:
        """``n`` new ids, unique across every replica (auto ids of the companion collection)."""
        rows = [{"v": [0.0, 0.0]} for _ in range(n)]
        result = self._conn.call(lambda c, t: c.insert(self.collection + ID_SUFFIX, rows, timeout=t))
        return [NEW_ID_BASE + int(i) for i in result["ids"]]

    def add(self, items: Sequence[NewItem]) -> builtins.list[int]:
        """Add all items or none; returns their new ids in order; durable on return."""
        if not items:
            return []
        embeddings = self._embeddings(items)
        ids = self.allocate_ids(len(items))
        self.put(ids, items, embeddings, [now_iso()] * len(items), replace=False)
        return ids

    def put(
        self,
        ids: Sequence[int],
        items: Sequence[NewItem],
        embeddings: np.ndarray,
        added_at: Sequence[str],
        replace: bool = True,
    ) -> None:
        """Write items under the given ids, all or none; ``replace`` upserts (a migration re-run rewrites what is
        there, never duplicates it), else an insert of ids known to be new (cheaper)."""
        rows = [to_row(i, it, v, at) for i, it, v, at in zip(ids, items, embeddings, added_at, strict=True)]
        try:
            if replace:
                self._conn.call(lambda c, t: c.upsert(self.collection, rows, timeout=t))
            else:
                self._conn.call(lambda c, t: c.insert(self.collection, rows, timeout=t))
        except GalleryError:
            try:  # the insert may have reached the log before the connection failed: take it back
                self._conn.call(lambda c, t: c.delete(self.collection, filter=ex.ids_expression(list(ids)), timeout=t))
            except GalleryError:
                logger.warning("could not take back the failed add of ids %s", list(ids)[:10])
            raise

    def _query(self, expr: str, fields: builtins.list[str], limit: int | None = None) -> builtins.list[dict[str, Any]]:
        kwargs = {**self._read_kwargs(), **({"limit": limit} if limit is not None else {})}
        return builtins.list(
            self._conn.call(
                lambda c, t: c.query(self.collection, filter=expr, output_fields=fields, timeout=t, **kwargs)
            )
        )

    def _rows(self, ids: Sequence[int], fields: builtins.list[str]) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        unique = sorted({int(i) for i in ids})
        for start in range(0, len(unique), _PAGE):
            for row in self._query(ex.ids_expression(unique[start : start + _PAGE]), fields):
                rows[int(row["id"])] = row
        return rows

    def _row(self, item_id: int, fields: builtins.list[str]) -> dict[str, Any]:
        rows = self._rows([item_id], fields)
        if item_id not in rows:
            raise ItemNotFoundError(f"no gallery item has id {item_id}")
        return rows[item_id]

    def get(self, item_id: int) -> GalleryItem:
        """One item; raises ``ItemNotFoundError``."""
        return to_item(self._row(item_id, ITEM_FIELDS))

    def ids(self, modality: Modality | None = None) -> builtins.list[int]:
        """Every id (of one modality), ascending."""
        expr = ex.modality_expression(modality)
        found: builtins.list[int] = []

        def scan(client: MilvusClient, timeout: float) -> None:
            iterator = client.query_iterator(
                self.collection,
                batch_size=_PAGE,
                filter=expr,
                output_fields=["id"],
                timeout=timeout,
                **self._read_kwargs(),
            )
            try:
                while batch := iterator.next():
                    found.extend(int(row["id"]) for row in batch)
            finally:
                iterator.close()

        self._conn.call(scan)
        return sorted(found)

    def list(self, offset: int = 0, limit: int = 100, modality: Modality | None = None) -> builtins.list[GalleryItem]:
        """Items in id order, paged (the page's ids are found by scanning the ids: O(items) per call)."""
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
        page = self.ids(modality)[offset : offset + limit]
        rows = self._rows(page, ITEM_FIELDS)
        return [to_item(rows[i]) for i in page if i in rows]

    def counts(self) -> dict[Modality, int]:
        """Number of items per modality (every modality present as a key)."""
        return {m: int(self._query(ex.modality_expression(m), ["count(*)"])[0]["count(*)"]) for m in Modality}

    def vectors(self, item_ids: Sequence[int]) -> np.ndarray:
        """Stored float32 embeddings ``(n, dim)`` of the given ids, in their order; raises ``ItemNotFoundError``."""
        wanted = [int(i) for i in np.asarray(item_ids, dtype=np.int64).reshape(-1)]
        rows = self._rows(wanted, ["id", VECTOR_FIELD])
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise ItemNotFoundError(f"no gallery item has id {missing[0]}")
        out = np.empty((len(wanted), self.embedding_dim), dtype=np.float32)
        for k, i in enumerate(wanted):
            out[k] = rows[i][VECTOR_FIELD]
        return out

    def thumbnail(self, item_id: int) -> bytes | None:
        """The item's JPEG thumbnail, ``None`` if it was added without one; raises ``ItemNotFoundError``."""
        return thumbnail_of(self._row(item_id, ["id", "meta", THUMBNAIL_FIELD]))

    def delete(self, item_id: int) -> None:
        """Remove one item (vector and metadata); raises ``ItemNotFoundError``; durable on return."""
        self._row(item_id, ["id"])
        self._conn.call(lambda c, t: c.delete(self.collection, filter=ex.ids_expression([item_id]), timeout=t))

    def search(
        self, queries: np.ndarray, top_k: int, where: SearchFilter | None = None
    ) -> builtins.list[builtins.list[Match]]:
        """Top-k matches for each query row of float32 ``(n, dim)``, best first; filters as Milvus expressions."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K} (Milvus's limit), got {top_k}")
        queries = validate_embeddings(queries, self.embedding_dim, "queries")
        if len(queries) == 0:
            return []
        expr = ex.filter_expression(where)
        min_score = -np.inf if where is None or where.min_score is None else where.min_score
        hits = self._conn.call(
            lambda c, t: c.search(
                self.collection,
                data=queries.tolist(),
                limit=top_k,
                filter=expr,
                output_fields=ITEM_FIELDS,
                search_params={"metric_type": "IP", "params": self.config.query_params()},
                anns_field=VECTOR_FIELD,
                timeout=t,
                **self._read_kwargs(),
            )
        )
        return [
            [
                Match(item=to_item({**hit["entity"], "id": hit["id"]}), score=float(hit["distance"]))
                for hit in row
                if hit["distance"] >= min_score
            ]
            for row in hits
        ]

    def seal_and_index(self, timeout_s: float = 3600.0, poll_s: float = 1.0) -> None:
        """Flush what was written into sealed segments and wait until the vector index covers every row (after a
        bulk load: searches on rows not yet indexed are brute force)."""
        self._conn.call(lambda c, t: c.flush(self.collection, timeout=t))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self._conn.call(lambda c, t: c.describe_index(self.collection, index_name=VECTOR_FIELD, timeout=t))
            if int(info.get("pending_index_rows", 0)) == 0 and info.get("state", "Finished") == "Finished":
                return
            time.sleep(poll_s)
        raise GalleryError(f"the index of {self.collection} was not built within {timeout_s} s")

    def close(self) -> None:
        """Stop reconnecting and close the client; further calls fail."""
        self._conn.close()

"""A modality's FAISS index kept to ``metadata.sqlite``, the source of truth: build, check a snapshot, replay.

An index is built empty (exact, or IVF trained on a sample of the stored vectors once a modality holds
``train_threshold`` items) and filled by ``reconcile``, which makes it hold exactly the ids SQLite holds by id set
difference: ids only in FAISS are removed, ids only in SQLite are added from their stored vectors. A snapshot read
from disk is used only if it is the index the config builds (``fits``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from common.modality import Modality
from index import vector_index as vi
from index.config import IndexConfig
from index.metadata import MetadataStore

logger = logging.getLogger(__name__)

_CHUNK = 8192  # vectors read from SQLite at a time when (re)building an index
_TRAIN_PER_LIST = 64  # IVF training sample: at most this many vectors per list


class IndexSync:
    """Builds a gallery's FAISS indexes from its store and keeps them to it; takes no lock (the gallery does)."""

    def __init__(self, store: MetadataStore, config: IndexConfig, embedding_dim: int) -> None:
        """Work on ``store``'s vectors of ``embedding_dim`` values with the indexes ``config`` names."""
        self._store = store
        self._config = config
        self._dim = embedding_dim

    def fits(self, path: Path, index: vi.FaissIndex) -> bool:
        """Whether a snapshot read from ``path`` is the index the config builds (else it is rebuilt, with a warning).

        An exact snapshot fits an IVF config too: a modality stays exact until ``train_threshold`` items.
        """
        if index.d != self._dim:
            logger.warning("%s has dimension %d, expected %d; rebuilding", path, index.d, self._dim)
            return False
        have, want = vi.build_params(index), self._config.build_params()
        if have["kind"] == "exact" or have == {k: want.get(k) for k in have}:
            return True
        logger.warning("%s is a %s index, the config asks for %s; rebuilding it from metadata.sqlite", path, have, want)
        return False

    def upgrade_due(self, index: vi.FaissIndex) -> bool:
        """Whether ``index`` is still exact although it holds enough items for the configured IVF index."""
        if self._config.kind != "ivf" or vi.is_ivf(index):
            return False
        return bool(index.ntotal >= self._config.train_threshold)

    def build(self, modality: Modality) -> vi.FaissIndex:
        """A new empty index for ``modality``: IVF trained on its stored vectors if there are enough, else exact."""
        config = self._config
        ids = self._store.ids(modality)
        if config.kind != "ivf" or len(ids) < config.train_threshold:
            return vi.new_exact(self._dim)
        n_train = min(len(ids), max(config.nlist, _TRAIN_PER_LIST * config.nlist))
        sample = np.sort(np.random.default_rng(0).choice(ids, size=n_train, replace=False))
        _, train = self._store.vectors(sample)
        logger.info(
            "training IVF (nlist %d, %s) for %s on %d vectors",
            config.nlist,
            config.quantizer,
            modality.value,
            len(train),
        )
        return vi.new_ivf(config, self._dim, train)

    def reconcile(self, modality: Modality, index: vi.FaissIndex) -> int:
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

"""Typed configuration of the Milvus gallery backend (pure data; the service settings embed it)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr

from common.config import Frozen

IndexType = Literal["FLAT", "HNSW", "IVF_SQ8", "IVF_PQ"]
Consistency = Literal["Strong", "Bounded", "Session", "Eventually"]

# Build parameters of each index type when ``index_params`` is empty (Milvus's documented starting points).
DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "HNSW": {"M": 16, "efConstruction": 200},
    "IVF_SQ8": {"nlist": 1024},
    "IVF_PQ": {"nlist": 1024, "m": 64, "nbits": 8},
}
DEFAULT_SEARCH_PARAMS: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "HNSW": {"ef": 128},
    "IVF_SQ8": {"nprobe": 32},
    "IVF_PQ": {"nprobe": 32},
}


class MilvusConfig(Frozen):
    """Where the gallery lives in Milvus and how it is indexed: ``VIREID_INDEX='{"kind": "milvus", "uri": ...}'``.

    ``uri`` is a file path (``gallery.db``: Milvus Lite, embedded, one process) or a server address
    (``http://host:19530``: Milvus standalone or a distributed cluster's proxy, shared by any number of replicas).
    """

    kind: Literal["milvus"]
    uri: str = Field(min_length=1, description="Milvus Lite file path, or http(s)://host:port of a Milvus server")
    token: SecretStr | None = Field(default=None, description="Milvus token (user:password or an API key)")
    db_name: str | None = Field(default=None, description="Milvus database; default: the server's default")
    collection: str | None = Field(
        default=None, description="collection name; default vireid_<model version> (one collection per model)"
    )
    index_type: IndexType = Field(default="FLAT", description="vector index: FLAT (exact), HNSW, IVF_SQ8, IVF_PQ")
    index_params: dict[str, Any] = Field(default_factory=dict, description="build parameters; default per type")
    search_params: dict[str, Any] = Field(default_factory=dict, description="search parameters; default per type")
    consistency: Consistency = Field(
        default="Strong", description="read consistency: Strong makes every acknowledged write of any replica visible"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="deadline of every call to Milvus")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="longest wait between reconnection attempts")

    def collection_name(self, model_version: str) -> str:
        """The configured collection, or ``vireid_<model version>`` with characters Milvus refuses replaced."""
        return self.collection or "vireid_" + re.sub(r"[^0-9A-Za-z_]", "_", model_version)

    def build_params(self) -> dict[str, Any]:
        """The index build parameters: ``index_params`` or the type's defaults."""
        return self.index_params or DEFAULT_INDEX_PARAMS[self.index_type]

    def query_params(self) -> dict[str, Any]:
        """The search parameters: ``search_params`` or the type's defaults."""
        return self.search_params or DEFAULT_SEARCH_PARAMS[self.index_type]

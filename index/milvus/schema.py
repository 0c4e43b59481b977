"""The gallery collection's schema, its vector index, and the model identity kept in its properties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymilvus import CollectionSchema, DataType, MilvusClient

from index.errors import IndexMismatchError
from index.milvus.config import MilvusConfig
from index.milvus.rows import THUMBNAIL_FIELD, VECTOR_FIELD

FORMAT = "vireid-gallery-milvus/1"
MAX_TEXT = 65_535  # Milvus's longest VARCHAR
MAX_THUMBNAIL_BYTES = MAX_TEXT // 4 * 3  # what fits base64-encoded
ID_SUFFIX = "__ids"  # the companion collection whose auto ids are the gallery's new ids


@dataclass(frozen=True)
class Identity:
    """What the collection was built for; a gallery opened for another model is refused."""

    embedding_dim: int
    model_version: str
    git_sha: str

    def properties(self) -> dict[str, str]:
        """The collection properties recording this identity."""
        return {
            "vireid.format": FORMAT,
            "vireid.embedding_dim": str(self.embedding_dim),
            "vireid.model_version": self.model_version,
            "vireid.git_sha": self.git_sha,
        }


def gallery_schema(dim: int) -> CollectionSchema:
    """Explicit int64 ids (kept by a migration), the vector, filterable scalars and a JSON field for the rest."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("modality", DataType.VARCHAR, max_length=16)
    schema.add_field("label", DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field("has_label", DataType.BOOL)
    schema.add_field("camera", DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field("has_camera", DataType.BOOL)
    schema.add_field("meta", DataType.JSON)
    schema.add_field(THUMBNAIL_FIELD, DataType.VARCHAR, max_length=MAX_TEXT)
    return schema


def id_schema() -> CollectionSchema:
    """The id allocator: Milvus's auto ids are unique across every client of the server (a vector is mandatory)."""
    schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    return schema


def ensure_collections(
    client: MilvusClient, name: str, config: MilvusConfig, identity: Identity, timeout: float
) -> None:
    """Create the gallery and id collections if absent, check an existing one's identity, load it.

    Raises:
        IndexMismatchError: the collection holds another model version's or dimension's embeddings.
    """
    if client.has_collection(name, timeout=timeout):
        check_identity(client.describe_collection(name, timeout=timeout), name, identity)
    else:
        params = client.prepare_index_params()
        params.add_index(VECTOR_FIELD, index_type=config.index_type, metric_type="IP", params=config.build_params())
        client.create_collection(
            name,
            schema=gallery_schema(identity.embedding_dim),
            index_params=params,
            consistency_level="Strong",
            properties=identity.properties(),
            timeout=timeout,
        )
    if not client.has_collection(name + ID_SUFFIX, timeout=timeout):
        params = client.prepare_index_params()
        params.add_index("v", index_type="FLAT", metric_type="L2")
        client.create_collection(name + ID_SUFFIX, schema=id_schema(), index_params=params, timeout=timeout)
    client.load_collection(name, timeout=timeout)


def check_identity(description: dict[str, Any], name: str, identity: Identity) -> None:
    """Refuse a collection built for another model (its properties) or dimension (its vector field)."""
    props = description.get("properties") or {}
    dims = [int(f["params"]["dim"]) for f in description["fields"] if f["name"] == VECTOR_FIELD]
    if props.get("vireid.format") != FORMAT or not dims:
        raise IndexMismatchError(
            f"Milvus collection {name!r} is not a vireid gallery (format {props.get('vireid.format')!r}); "
            "set VIREID_INDEX's collection to a new name or drop that collection"
        )
    if dims[0] != identity.embedding_dim or props.get("vireid.model_version") != identity.model_version:
        raise IndexMismatchError(
            f"Milvus collection {name!r} holds model {props.get('vireid.model_version')!r} (dim {dims[0]}), "
            f"the loaded model is {identity.model_version!r} (dim {identity.embedding_dim}); use a collection per "
            "model (the default name derives from the model version) or migrate the gallery"
        )

"""Milvus gallery backend: the ``Gallery`` protocol on a Milvus collection (Lite, standalone or cluster)."""

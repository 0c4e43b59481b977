"""Milvus boolean expressions for the gallery's filters (values quoted, never spliced raw)."""

from __future__ import annotations

import json

from common.modality import Modality
from index.base import SearchFilter


def quote(value: str) -> str:
    """A Milvus string literal for ``value`` (JSON escaping, which Milvus's parser reads back exactly)."""
    return json.dumps(value, ensure_ascii=False)


def optional_equals(field: str, value: str) -> str:
    """``field`` equals ``value``, for a nullable string stored as ``field`` plus ``has_<field>``."""
    return f"(has_{field} == true and {field} == {quote(value)})"


def filter_expression(where: SearchFilter | None) -> str:
    """The expression selecting the items ``where`` admits (``min_score`` is applied to the scores, not here)."""
    if where is None:
        return ""
    parts = []
    if where.modality is not None:
        parts.append(f"modality == {quote(Modality(where.modality).value)}")
    if where.label is not None:
        parts.append(optional_equals("label", where.label))
    if where.camera is not None:
        parts.append(optional_equals("camera", where.camera))
    return " and ".join(parts)


def modality_expression(modality: Modality | None) -> str:
    """Every item (``id >= 0``: a query needs a filter) or those of one modality."""
    return "id >= 0" if modality is None else f"modality == {quote(Modality(modality).value)}"


def ids_expression(ids: list[int]) -> str:
    """The items with these ids."""
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"

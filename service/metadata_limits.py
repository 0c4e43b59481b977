"""Limits on gallery metadata, checked once when items are added: whatever is accepted serialises on every read.

An ``extra`` object must be standard JSON (no NaN or Infinity, no lone surrogates), nested at most
``max_extra_depth`` deep, hold at most ``max_extra_keys`` keys and serialise to at most ``max_extra_bytes``;
one request may store at most ``max_metadata_bytes_per_request`` bytes of metadata, a shared ``extra`` counted
once per file it is stored with. Every violation is a 422 naming the field, the limit and its setting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError

from service.schemas import ItemMetadata
from service.settings import Settings


@dataclass(frozen=True)
class MetadataLimits:
    """The metadata limits of ``Settings``."""

    max_extra_bytes: int
    max_extra_depth: int
    max_extra_keys: int
    max_request_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> MetadataLimits:
        """The limits configured in ``settings``."""
        return cls(
            settings.max_extra_bytes,
            settings.max_extra_depth,
            settings.max_extra_keys,
            settings.max_metadata_bytes_per_request,
        )


def metadata_error(loc: Sequence[str | int], message: str, value: Any = None) -> RequestValidationError:
    """A 422 in FastAPI's validation shape, located in the request body."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}])


def parse_extra(raw: str, limits: MetadataLimits) -> Any:
    """Parse the ``extra`` form field; 422 when it is not JSON or nested past what the parser takes."""
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise metadata_error(["extra"], _depth_message(limits), "...") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise metadata_error(["extra"], f"invalid JSON: {exc}", raw[:100]) from exc


def _depth_message(limits: MetadataLimits) -> str:
    return f"nested deeper than {limits.max_extra_depth} levels (VIREID_MAX_EXTRA_DEPTH)"


def _not_standard(value: Any) -> str | None:
    """Why a scalar or key has no standard JSON form, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} has no JSON form (NaN and Infinity are not JSON); send null or a string"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone surrogate (\\ud800-\\udfff without its pair), which is not UTF-8"
    return None


def _shape(value: Any) -> tuple[int, int, str | None]:
    """Nesting depth, number of object keys and the first non-standard value found; iterative (no recursion)."""
    depth, keys, problem = 0, 0, None
    stack = [(value, 1)]
    while stack and problem is None:
        node, level = stack.pop()
        if isinstance(node, dict):
            depth, keys = max(depth, level), keys + len(node)
            problem = next((p for p in map(_not_standard, node) if p is not None), None)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in node)
        else:
            problem = _not_standard(node)
    return depth, keys, problem


def check_extra(extra: dict[str, Any], limits: MetadataLimits, loc: Sequence[str | int]) -> int:
    """Check one ``extra`` object against the limits; returns its size as the gallery stores it (bytes).

    Raises:
        RequestValidationError: too deep, too many keys, not standard JSON or too large (422, located at ``loc``).
    """
    depth, keys, problem = _shape(extra)
    if depth > limits.max_extra_depth:
        raise metadata_error(loc, _depth_message(limits), "...")
    if keys > limits.max_extra_keys:
        raise metadata_error(loc, f"{keys} keys; the limit is {limits.max_extra_keys} (VIREID_MAX_EXTRA_KEYS)", "...")
    if problem is not None:
        raise metadata_error(loc, f"not standard JSON: {problem}")
    size = len(json.dumps(extra, sort_keys=True))  # index/metadata.py's form: ASCII, so characters = bytes
    if size > limits.max_extra_bytes:
        raise metadata_error(
            loc, f"{size} bytes serialised; the limit is {limits.max_extra_bytes} bytes (VIREID_MAX_EXTRA_BYTES)"
        )
    return size


def text_bytes(*values: str | None) -> int:
    """UTF-8 size of the text fields stored with an item."""
    return sum(len(v.encode("utf-8", errors="replace")) for v in values if v is not None)


def check_request_total(total: int, limits: MetadataLimits) -> None:
    """422 when the metadata one request would store exceeds ``max_request_bytes``."""
    if total > limits.max_request_bytes:
        raise metadata_error(
            ["metadata"],
            f"the request would store {total} bytes of metadata (a shared extra counts once per file); the limit "
            f"is {limits.max_request_bytes} bytes (VIREID_MAX_METADATA_BYTES_PER_REQUEST)",
        )


def stored_bytes(meta: ItemMetadata, filename: str | None) -> int:
    """Bytes of metadata the gallery stores for one item: its ``extra`` as stored and its text fields."""
    source = meta.source if meta.source is not None else filename
    captured = meta.captured_at.isoformat() if meta.captured_at else None
    return len(json.dumps(meta.extra, sort_keys=True)) + text_bytes(meta.label, meta.camera, captured, source)

"""The header of a benchmark's result table: right-aligned column titles separated by ``|``, then a rule."""

from __future__ import annotations


def print_header(*columns: tuple[str, int]) -> None:
    """Print ``(title, width)`` columns and a rule as long as the header."""
    header = " | ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))

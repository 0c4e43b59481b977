"""The docs a clone can follow: every relative Markdown link and every repository path that a doc, docstring or
comment names exists in the repository, and nothing points outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOP_DIRS = (
    "common",
    "model",
    "training",
    "index",
    "service",
    "cli",
    "docs",
    "tests",
    "bench",
    "configs",
    "docker",
    "scripts",
)
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg"}
# A path into the repository: a top-level folder, then path characters; not an image ref (docker/dockerfile:1).
_PATH = re.compile(r"(?<![\w./<>{}-])(?:" + "|".join(TOP_DIRS) + r")/[\w./{},-]*+(?!:\d)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_OUTSIDE = re.compile(r"\.\./shared|shared/(?:METHOD|STYLE)\.md|\bMETHOD\.md|\bSTYLE\.md|seed/paper-draft")


def tracked_files() -> list[Path]:
    """The repository's files as git tracks them (plus new, not yet ignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
    )
    files = [REPO / line for line in out.stdout.splitlines() if line]
    return [p for p in files if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name.startswith("Dockerfile"))]


def expand(path: str) -> list[str]:
    """``a/{b,c}.py`` -> ``a/b.py``, ``a/c.py`` (one level of braces, as the docs use them)."""
    match = re.search(r"\{([^{}]*)\}", path)
    if not match or "," not in match.group(1):
        return [path]
    return [p for alt in match.group(1).split(",") for p in expand(path[: match.start()] + alt + path[match.end() :])]


def named_paths(text: str) -> set[str]:
    """Repository paths a text names, cleaned of trailing punctuation."""
    names = set()
    for raw in _PATH.findall(text):
        raw = raw.rstrip(".,")
        if re.search(r"\{[^}]*\.\.", raw) or "__pycache__" in raw:  # cam{1..6}: a pattern, not a path
            continue
        names.update(p.rstrip(".,") for p in expand(raw))
    return names


def test_relative_markdown_links_resolve_inside_the_repository() -> None:
    broken = []
    for md in [p for p in tracked_files() if p.suffix == ".md"]:
        for target in _LINK.findall(md.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (md.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{md.relative_to(REPO)}: ({target})")
    assert not broken, broken


def test_nothing_names_a_file_outside_the_repository() -> None:
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in tracked_files()
        if p != Path(__file__)
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), start=1)
        if _OUTSIDE.search(line)
    ]
    assert not hits, hits


def test_every_repository_path_named_in_docs_docstrings_and_comments_exists() -> None:
    missing = []
    for p in tracked_files():
        if p == Path(__file__):
            continue
        for name in sorted(named_paths(p.read_text(errors="replace"))):
            if not (REPO / name).exists():
                missing.append(f"{p.relative_to(REPO)}: {name}")
    assert not missing, missing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see `training/data/{sysu,regdb}.py`.", {"training/data/sysu.py", "training/data/regdb.py"}),
        ("https://x.org/docs/a.md and <root>/cam{1..6}/x", set()),
        ("run scripts/test.sh, then docs/results.md.", {"scripts/test.sh", "docs/results.md"}),
    ],
)
def test_named_paths(text: str, expected: set[str]) -> None:
    assert named_paths(text) == expected

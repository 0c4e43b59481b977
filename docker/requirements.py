"""Print the pip requirements of the project plus some extras, read from pyproject.toml (stdlib only).

Usage (in the image builders): ``python docker/requirements.py --extra serve [--cpu] > requirements.txt``

The dependencies get their own cached layer, installed before the source is copied, so a code change does not
reinstall them. ``--cpu`` swaps ``onnxruntime-gpu`` for the CPU-only ``onnxruntime`` wheel with the same version
specifier: the two distributions install the same ``onnxruntime`` package and must never share an environment.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

GPU_RUNTIME = "onnxruntime-gpu"
CPU_RUNTIME = "onnxruntime"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?(.*)$")


class UnknownExtraError(KeyError):
    """An extra asked for is not declared in ``[project.optional-dependencies]``."""


def _split(requirement: str) -> tuple[str, set[str], str]:
    """``"pkg[a,b]>=1; marker"`` -> (normalised name, extras, rest)."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"cannot parse requirement {requirement!r} in pyproject.toml")
    name, extras, rest = match.groups()
    names = {e.strip() for e in extras[1:-1].split(",")} if extras else set()
    return re.sub(r"[-_.]+", "-", name).lower(), names, rest


def requirements(pyproject: dict, extras: list[str], cpu: bool = False) -> list[str]:
    """The base dependencies plus those of ``extras`` (self-references expanded), de-duplicated, in order."""
    project = pyproject["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    own_name = _split(project["name"])[0]
    out: list[str] = []
    pending = list(project.get("dependencies", []))
    seen_extras: set[str] = set()
    for extra in extras:
        if extra not in optional:
            raise UnknownExtraError(f"extra {extra!r} is not in pyproject.toml; declared: {sorted(optional)}")
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen_extras:
            continue
        seen_extras.add(extra)
        for req in optional[extra]:
            name, sub_extras, _ = _split(req)
            if name == own_name:
                todo.extend(sorted(sub_extras))
            else:
                pending.append(req)
    for req in pending:
        name, _, rest = _split(req)
        if cpu and name == GPU_RUNTIME:
            req = CPU_RUNTIME + rest
        if req not in out:
            out.append(req)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: write one requirement per line to stdout."""
    parser = argparse.ArgumentParser(description="Print the pip requirements of the project plus some extras.")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--extra", action="append", default=[], help="optional-dependencies group (repeatable)")
    parser.add_argument("--cpu", action="store_true", help=f"replace {GPU_RUNTIME} by {CPU_RUNTIME}")
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as f:
        pyproject = tomllib.load(f)
    sys.stdout.write("".join(f"{req}\n" for req in requirements(pyproject, args.extra, cpu=args.cpu)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A small Dockerfile parser for the tests: global ARG defaults, stages, instructions (not the full grammar)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = REPO / "docker-compose.yml"


@dataclass
class Instruction:
    """One Dockerfile instruction with continuation lines joined and comments dropped."""

    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """Arguments of an exec-form (JSON array) instruction, or shell words otherwise."""
        text = self.args.strip()
        if text.startswith("["):
            return list(yaml.safe_load(text))
        return shlex.split(text)


@dataclass
class Stage:
    """A build stage: its base image (ARG defaults substituted), name and instructions."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Instructions of one keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        """The last instruction of one keyword (the one in effect for CMD, USER, HEALTHCHECK)."""
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs set in this stage."""
        out: dict[str, str] = {}
        for instr in self.all("ENV"):
            for word in shlex.split(instr.args):
                key, _, value = word.partition("=")
                out[key] = value
        return out


@dataclass
class Dockerfile:
    """A parsed Dockerfile: global ARG defaults and the stages in order."""

    path: Path
    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        """The stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path.name} has no stage {name!r}; stages: {[s.name for s in self.stages]}")


def _logical_lines(text: str) -> list[str]:
    """Join backslash continuations; drop comments, blank lines and parser directives."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "dangling line continuation at end of file"
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse ``path`` into global ARGs and stages (only what the tests need, not the full grammar)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.strip().partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        else:
            assert stages, f"{path.name}: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, rest.strip()))
    return Dockerfile(path=path, args=args, stages=stages)

"""The rooms of sagefleet (docs/architecture.md): who may import whom, and size limits.

Read from the source with ast, so a forbidden import fails here before it can matter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sagefleet"
MODULES = sorted(PACKAGE.rglob("*.py"))

# room -> rooms of sagefleet it must not import (a room is a package or a top-level module)
FORBIDDEN = {
    "probe": {"*"},  # shipped alone into the image
    "pins": {"*"},  # pure; checked before any host is contacted (the cache: see BELOW_ALL)
    "bake": {"facts", "operations", "deploys", "rollout", "report", "validation", "inputs"},
    "gate": {"facts", "operations", "deploys", "rollout", "report", "validation"},
    "commands": {"*"},
    "facts": {"operations", "deploys", "rollout", "report", "validation"},
    "operations": {"deploys", "rollout", "report", "validation"},
    "deploys": {"rollout", "validation"},
}
# rooms that must not import pyinfra at all
NO_PYINFRA = {"probe", "pins", "bake", "gate", "commands", "fleet", "project", "manifest", "cache"}
# rooms every room but probe may import: they import nothing from sagefleet themselves
BELOW_ALL = {"cache"}


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by path (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ["sagefleet", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    names.update(f"{module}.{alias.name}" for alias in node.names)
                    continue
            else:
                module = node.module or ""
            names.add(module)
    return names


def _sagefleet_rooms(names: set[str]) -> set[str]:
    return {n.split(".")[1] for n in names if n.startswith("sagefleet.") and n.count(".") >= 1}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_stay_in_their_rooms(path):
    room = _room(path)
    names = _imports(path)
    rooms = _sagefleet_rooms(names) - {room}
    if room == "cache":
        assert not rooms, f"sagefleet/cache.py imports {sorted(rooms)}"
    if room != "probe":
        rooms -= BELOW_ALL
    forbidden = FORBIDDEN.get(room, set())
    bad = rooms if "*" in forbidden else rooms & forbidden
    assert not bad, f"sagefleet/{path.relative_to(PACKAGE)} ({room}) imports {sorted(bad)}"
    if room in NO_PYINFRA:
        assert not {n for n in names if n.split(".")[0] in ("pyinfra", "pyinfra_cli")}, path


def test_the_import_check_sees_relative_imports():
    names = _imports(PACKAGE / "operations" / "build.py")
    assert "sagefleet.facts.build" in names and "sagefleet.commands" in names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    lines = path.read_text().splitlines()
    if path.name != "probe.py":  # shipped as one file into the image
        assert len(lines) <= 400, f"{path.name}: {len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= 80, f"{path.name}: {node.name} is {length} lines"

"""Data-driven cases (tests/unit/data/<kind>/<Name>/*.json) as pytest parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def case_params(cases: Sequence[Path]) -> Iterator[Any]:
    """(path, case) per file, id "<Name>/<stem>"; "xfail": "why" marks a known bug (strict)."""
    for path in cases:
        case = json.loads(path.read_text())
        marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else []
        yield pytest.param(path, case, id=f"{path.parent.name}/{path.stem}", marks=marks)


def find(modules: Sequence[ModuleType], name: str) -> Any:
    """The one attribute called name among modules (a case directory names it)."""
    (found,) = [getattr(m, name) for m in modules if hasattr(m, name)]
    return found
